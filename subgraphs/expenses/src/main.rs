use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main::<expenses::service::Expenses>().await
}
