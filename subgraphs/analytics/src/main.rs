use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main(analytics::SERVICE, analytics::DEFAULT_PORT, analytics::run).await
}
