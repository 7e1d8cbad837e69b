use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main::<notifications::service::Notifications>().await
}
