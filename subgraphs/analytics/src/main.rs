use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main::<analytics::service::Analytics>().await
}
