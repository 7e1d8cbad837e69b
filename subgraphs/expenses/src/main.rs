use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main(expenses::SERVICE, expenses::DEFAULT_PORT, expenses::run).await
}
