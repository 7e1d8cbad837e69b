use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main(users::SERVICE, users::DEFAULT_PORT, users::run).await
}
