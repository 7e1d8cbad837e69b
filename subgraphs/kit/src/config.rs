//! Typed configuration from environment variables, with defaults on the struct and
//! start-up errors that name the offending variable. Secrets are never printed.

use std::fmt;
use std::str::FromStr;

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: &str, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_string(),
            message: message.into(),
        }
    }
}

/// A source of variables: the process environment, or a fixed list in tests.
pub trait Vars {
    fn get(&self, name: &str) -> Option<String>;
}

/// Reads the process environment.
pub struct Env;

impl Vars for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Vars for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

impl<const N: usize> Vars for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        Vars::get(self.as_slice(), name)
    }
}

impl Vars for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

/// Wraps a source and remembers every name asked for: what a service really reads.
pub struct Recording<'a, V: Vars + ?Sized> {
    inner: &'a V,
    seen: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl<'a, V: Vars + ?Sized> Recording<'a, V> {
    pub fn new(inner: &'a V) -> Self {
        Recording {
            inner,
            seen: Default::default(),
        }
    }

    /// The names read so far.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl<V: Vars + ?Sized> Vars for Recording<'_, V> {
    fn get(&self, name: &str) -> Option<String> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(name.to_string());
        }
        self.inner.get(name)
    }
}

/// Reads `name` and parses it, or returns `default` when unset.
pub fn var_or<T>(vars: &(impl Vars + ?Sized), name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match vars.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
    }
}

/// A secret string whose `Debug` output hides its value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Settings every subgraph has.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Service name, also the default database name.
    pub service: String,
    /// `HOST` (default 127.0.0.1).
    pub host: String,
    /// `PORT`.
    pub port: u16,
    /// `MONGODB_URI` (default mongodb://127.0.0.1:27017).
    pub mongodb_uri: String,
    /// `MONGODB_DATABASE` (default: the service name).
    pub database: String,
    /// `JWT_SECRET`: HS256 key shared with the router and the users subgraph.
    pub jwt_secret: Secret,
    /// `SERVICE_TOKEN`: the credential internal endpoints accept.
    pub service_token: Secret,
    /// `LOG_LEVEL` (default info), an env-filter directive.
    pub log_level: String,
    /// `LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `MAX_BODY_BYTES` (default 1 MiB).
    pub max_body_bytes: usize,
    /// `INSTANCE_ID` (default: `HOSTNAME`, else the service name): this instance's name
    /// for what it keeps of its own in the database, its change-stream positions. Each
    /// instance of a service needs its own, kept across restarts (a container's host
    /// name is).
    pub instance: String,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the OTLP/HTTP collector's base URL; traces are
    /// exported only when it is set.
    pub otlp_endpoint: Option<String>,
}

pub use contract::telemetry::LogFormat;

/// The variables `ServiceConfig` reads; services add their own on top.
pub const SERVICE_VARS: &[&str] = &[
    "HOST",
    "PORT",
    "MONGODB_URI",
    "MONGODB_DATABASE",
    "JWT_SECRET",
    "SERVICE_TOKEN",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "MAX_BODY_BYTES",
    "INSTANCE_ID",
    "HOSTNAME",
    contract::telemetry::OTLP_ENDPOINT_VAR,
];

/// Shortest JWT secret accepted (HS256 wants at least 256 bits).
pub const MIN_SECRET_LEN: usize = 32;

impl ServiceConfig {
    pub fn from_vars(
        vars: &(impl Vars + ?Sized),
        service: &str,
        default_port: u16,
    ) -> Result<Self, ConfigError> {
        let jwt_secret = vars
            .get("JWT_SECRET")
            .ok_or_else(|| ConfigError::new("JWT_SECRET", "must be set"))?;
        if jwt_secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                "JWT_SECRET",
                format!("must be at least {MIN_SECRET_LEN} characters"),
            ));
        }
        // Without an explicit service token, derive one from the JWT secret so a
        // development stack works; production sets SERVICE_TOKEN.
        let service_token = vars
            .get("SERVICE_TOKEN")
            .unwrap_or_else(|| format!("svc-{}", crate::auth::sha256_hex(&jwt_secret)));
        Ok(ServiceConfig {
            service: service.to_string(),
            host: var_or(vars, "HOST", "127.0.0.1".to_string())?,
            port: var_or(vars, "PORT", default_port)?,
            mongodb_uri: var_or(vars, "MONGODB_URI", "mongodb://127.0.0.1:27017".to_string())?,
            database: var_or(vars, "MONGODB_DATABASE", service.to_string())?,
            jwt_secret: Secret::new(jwt_secret),
            service_token: Secret::new(service_token),
            log_level: var_or(vars, "LOG_LEVEL", "info".to_string())?,
            log_format: var_or(vars, "LOG_FORMAT", LogFormat::Text)?,
            max_body_bytes: var_or(vars, "MAX_BODY_BYTES", 1024 * 1024)?,
            instance: vars
                .get("INSTANCE_ID")
                .or_else(|| vars.get("HOSTNAME"))
                .unwrap_or_else(|| service.to_string()),
            otlp_endpoint: contract::telemetry::otlp_endpoint_setting(
                vars.get(contract::telemetry::OTLP_ENDPOINT_VAR),
            )
            .map_err(|e| ConfigError::new(contract::telemetry::OTLP_ENDPOINT_VAR, e))?,
        })
    }

    pub fn from_env(service: &str, default_port: u16) -> Result<Self, ConfigError> {
        ServiceConfig::from_vars(&Env, service, default_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults_fill_what_is_unset() {
        let c = ServiceConfig::from_vars(&[("JWT_SECRET", SECRET)], "users", 3001).unwrap();
        assert_eq!(c.port, 3001);
        assert_eq!(c.database, "users");
        assert_eq!(c.mongodb_uri, "mongodb://127.0.0.1:27017");
        assert_eq!(c.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn a_bad_variable_is_named_in_the_error() {
        let e = ServiceConfig::from_vars(&[("JWT_SECRET", SECRET), ("PORT", "http")], "users", 1)
            .unwrap_err();
        assert_eq!(e.variable, "PORT");
        assert!(e.to_string().contains("PORT"), "{e}");
        let e = ServiceConfig::from_vars(&[("JWT_SECRET", SECRET), ("LOG_FORMAT", "xml")], "u", 1)
            .unwrap_err();
        assert_eq!(e.variable, "LOG_FORMAT");
    }

    #[test]
    fn a_missing_or_short_secret_is_refused() {
        let e = ServiceConfig::from_vars(&[("PORT", "1")], "users", 1).unwrap_err();
        assert_eq!(e.variable, "JWT_SECRET");
        let e = ServiceConfig::from_vars(&[("JWT_SECRET", "short")], "users", 1).unwrap_err();
        assert_eq!(e.variable, "JWT_SECRET");
        assert!(!e.to_string().contains("short"));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let c = ServiceConfig::from_vars(&[("JWT_SECRET", SECRET)], "users", 3001).unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains(SECRET));
    }
}
