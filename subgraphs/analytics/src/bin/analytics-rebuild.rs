//! `analytics-rebuild`: recomputes the analytics read models from a full replay of
//! the expense events stored in the analytics' own event log (`events`). Same
//! environment as the service (`MONGODB_URI`, `MONGODB_DATABASE`, `JWT_SECRET`).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config =
        match kit::config::ServiceConfig::from_env(analytics::SERVICE, analytics::DEFAULT_PORT) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("analytics-rebuild: {e}");
                return ExitCode::from(2);
            }
        };
    kit::telemetry::init(
        "analytics-rebuild",
        &config.log_level,
        config.log_format,
        config.otlp_endpoint.as_deref(),
    );
    match analytics::rebuild(config).await {
        Ok(n) => {
            println!("replayed {n} events; read models rebuilt");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("analytics-rebuild: {e:#}");
            ExitCode::FAILURE
        }
    }
}
