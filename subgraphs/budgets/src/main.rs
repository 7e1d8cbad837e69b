use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    kit::bootstrap::main(budgets::SERVICE, budgets::DEFAULT_PORT, budgets::run).await
}
