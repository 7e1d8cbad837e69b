use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main(
        notifications::SERVICE,
        notifications::DEFAULT_PORT,
        notifications::run,
    )
    .await
}
