//! Process start-up shared by the service binaries: configuration, logging, the
//! listener, and exit codes that say what went wrong.

use std::future::Future;
use std::process::ExitCode;

use tokio::net::TcpListener;

use crate::config::{ConfigError, ServiceConfig};

/// Runs a service binary: reads `ServiceConfig` from the environment, binds
/// `HOST:PORT`, and calls `run(config, listener, shutdown)` until Ctrl-C / SIGTERM.
/// Exit codes: 0 clean stop, 1 runtime failure, 2 configuration error.
pub async fn main<F, Fut>(service: &str, default_port: u16, run: F) -> ExitCode
where
    F: FnOnce(ServiceConfig, TcpListener, crate::server::Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let config = match ServiceConfig::from_env(service, default_port) {
        Ok(c) => c,
        Err(e) => return config_failure(service, &e),
    };
    crate::telemetry::init(&config.log_level, config.log_format);
    let addr = format!("{}:{}", config.host, config.port);
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{service}: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(service, %addr, "listening");
    match run(config, listener, Box::pin(crate::server::shutdown_signal())).await {
        Ok(()) => {
            tracing::info!(service, "stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_failure(service: &str, e: &ConfigError) -> ExitCode {
    eprintln!("{service}: {e}");
    ExitCode::from(2)
}
