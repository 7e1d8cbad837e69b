//! Typed router configuration: defaults on the structs, optionally a TOML file,
//! then environment variables, then command-line flags. Unknown keys are rejected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Path of the supergraph SDL.
    pub supergraph: PathBuf,
    pub listen: SocketAddr,
    /// Answer introspection queries from the API schema.
    pub introspection: bool,
    /// Serve GraphiQL to browsers on GET /graphql.
    pub graphiql: bool,
    /// Entries in each of the operation and plan caches.
    pub plan_cache_size: usize,
    /// Share identical in-flight subgraph queries.
    pub dedupe_requests: bool,
    /// Default per-subgraph request timeout.
    pub subgraph_timeout_ms: u64,
    /// Per-subgraph overrides, keyed by subgraph name.
    pub subgraphs: HashMap<String, SubgraphConfig>,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub rate_limit: RateLimitConfig,
    pub persisted_queries: PersistedQueriesConfig,
    pub websocket: WebsocketConfig,
    /// Addresses of the proxies in front of the router whose `X-Forwarded-For` is
    /// believed; from anyone else the header is ignored (it would let a client choose
    /// the address its rate limit is counted under).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Largest subgraph response body read, in bytes; a bigger one is a
    /// `SUBGRAPH_BAD_RESPONSE` error for that fetch.
    pub max_subgraph_response_bytes: usize,
    /// Base URL of an OTLP/HTTP collector (`OTEL_EXPORTER_OTLP_ENDPOINT`); traces are
    /// exported only when it is set.
    pub otlp_endpoint: Option<String>,
}

/// Bounds of one websocket connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebsocketConfig {
    /// Operations (subscriptions, queries, mutations) running at once on one connection;
    /// the next one is answered `TOO_MANY_OPERATIONS`.
    pub max_operations: usize,
    /// Messages waiting to be written to one client.
    pub outgoing_queue: usize,
    /// A client whose queue stays full this long (it does not read) is disconnected:
    /// the socket is dropped, as a close frame could not reach a client that reads
    /// nothing.
    pub write_timeout_ms: u64,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        Self {
            max_operations: 100,
            outgoing_queue: 256,
            write_timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubgraphConfig {
    pub url: Option<String>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_body_bytes: usize,
    pub max_depth: usize,
    pub max_aliases: usize,
    pub max_root_fields: usize,
    pub max_cost: u64,
    /// Multiplier for list fields without a `first`/`limit` argument.
    pub default_list_size: u64,
    pub max_tokens: usize,
}

#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret (usually from JWT_SECRET). Never logged.
    pub jwt_secret: Option<String>,
    /// RS256 public keys as a JWKS file.
    pub jwks_path: Option<PathBuf>,
    /// RS256 public keys fetched once at startup from a URL.
    pub jwks_url: Option<String>,
    /// Reject requests without a token.
    pub require_authentication: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwks_path", &self.jwks_path)
            .field("jwks_url", &self.jwks_url)
            .field("require_authentication", &self.require_authentication)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Sustained requests per second per client.
    pub per_second: u32,
    /// Bucket size.
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistedQueriesConfig {
    /// Automatic persisted queries (sha256 hash in extensions.persistedQuery).
    pub apq: bool,
    /// Manifest of allowed operations: JSON `{ "<sha256>": "<query>" }` or
    /// `{ "operations": { ... } }`.
    pub safelist_path: Option<PathBuf>,
    /// When true only operations from the manifest run.
    pub safelist_enforce: bool,
    pub apq_cache_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            supergraph: PathBuf::from("schema/supergraph.graphql"),
            listen: SocketAddr::from(([0, 0, 0, 0], 3000)),
            introspection: true,
            graphiql: true,
            plan_cache_size: 1024,
            dedupe_requests: true,
            subgraph_timeout_ms: 30_000,
            subgraphs: HashMap::new(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            rate_limit: RateLimitConfig::default(),
            persisted_queries: PersistedQueriesConfig::default(),
            websocket: WebsocketConfig::default(),
            trusted_proxies: Vec::new(),
            max_subgraph_response_bytes: 32 * 1024 * 1024,
            otlp_endpoint: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_depth: 32,
            max_aliases: 64,
            max_root_fields: 64,
            max_cost: 1_000_000,
            default_list_size: 10,
            max_tokens: 15_000,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            per_second: 50,
            burst: 100,
        }
    }
}

impl Default for PersistedQueriesConfig {
    fn default() -> Self {
        Self {
            apq: true,
            safelist_path: None,
            safelist_enforce: false,
            apq_cache_size: 4096,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(String, String),
    #[error("invalid value for {0}: {1}")]
    Value(String, String),
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read(path.display().to_string(), e))?;
        toml::from_str(&text)
            .map_err(|e| ConfigError::Parse(path.display().to_string(), e.to_string()))
    }

    /// The configuration the `serve` command starts from: the TOML file named by
    /// `ROUTER_CONFIG` (or the defaults), then the other variables (`apply_env`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = match env("ROUTER_CONFIG").filter(|p| !p.is_empty()) {
            Some(path) => Config::from_file(Path::new(&path))?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        Ok(config)
    }

    /// Applies environment variables: ROUTER_CONFIG is read by `from_env`; here
    /// PORT, ROUTER_LISTEN, SUPERGRAPH_PATH, JWT_SECRET, JWKS_PATH, JWKS_URL,
    /// ROUTER_INTROSPECTION, ROUTER_RATE_LIMIT_PER_SECOND, ROUTER_DEDUPE, SUBGRAPH_TIMEOUT_MS.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse::<T>()
                .map_err(|e| ConfigError::Value(key.to_owned(), e.to_string()))
        }
        if let Some(v) = env("ROUTER_LISTEN") {
            self.listen = parse("ROUTER_LISTEN", &v)?;
        }
        if let Some(v) = env("PORT") {
            self.listen.set_port(parse("PORT", &v)?);
        }
        if let Some(v) = env("SUPERGRAPH_PATH") {
            self.supergraph = PathBuf::from(v);
        }
        if let Some(v) = env("JWT_SECRET").filter(|v| !v.is_empty()) {
            self.auth.jwt_secret = Some(v);
        }
        if let Some(v) = env("JWKS_PATH") {
            self.auth.jwks_path = Some(PathBuf::from(v));
        }
        if let Some(v) = env("JWKS_URL") {
            self.auth.jwks_url = Some(v);
        }
        if let Some(v) = env("ROUTER_INTROSPECTION") {
            self.introspection = parse("ROUTER_INTROSPECTION", &v)?;
        }
        if let Some(v) = env("ROUTER_RATE_LIMIT_PER_SECOND") {
            self.rate_limit.enabled = true;
            self.rate_limit.per_second = parse("ROUTER_RATE_LIMIT_PER_SECOND", &v)?;
        }
        if let Some(v) = env("ROUTER_DEDUPE") {
            self.dedupe_requests = parse("ROUTER_DEDUPE", &v)?;
        }
        if let Some(v) = env("SUBGRAPH_TIMEOUT_MS") {
            self.subgraph_timeout_ms = parse("SUBGRAPH_TIMEOUT_MS", &v)?;
        }
        let otlp = contract::telemetry::OTLP_ENDPOINT_VAR;
        if let Some(v) = env(otlp) {
            self.otlp_endpoint = contract::telemetry::otlp_endpoint_setting(Some(v))
                .map_err(|e| ConfigError::Value(otlp.to_owned(), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_override_defaults_and_env_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("router-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("router.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:4000"
introspection = false
[limits]
max_depth = 7
[subgraphs.users]
url = "http://users:3001/graphql"
timeout_ms = 500
"#,
        )
        .expect("write config");
        let mut config = Config::from_file(&path).expect("valid config");
        assert_eq!(config.limits.max_depth, 7);
        assert_eq!(
            config.limits.max_aliases,
            LimitsConfig::default().max_aliases
        );
        assert!(!config.introspection);
        assert_eq!(config.subgraphs["users"].timeout_ms, Some(500));
        let env: HashMap<&str, &str> = [("PORT", "3999"), ("JWT_SECRET", "s3cret")]
            .into_iter()
            .collect();
        config
            .apply_env(|k| env.get(k).map(|v| (*v).to_owned()))
            .expect("valid env");
        assert_eq!(config.listen.to_string(), "127.0.0.1:3999");
        assert_eq!(config.auth.jwt_secret.as_deref(), Some("s3cret"));
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "secrets are never printed"
        );
    }

    #[test]
    fn unknown_keys_and_bad_env_values_are_rejected() {
        let dir = std::env::temp_dir().join(format!("router-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("router.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:4000\"\nlisten_port = 3\n")
            .expect("write config");
        let err = Config::from_file(&path).expect_err("unknown key");
        assert!(err.to_string().contains("listen_port"), "{err}");
        let mut config = Config::default();
        let err = config
            .apply_env(|k| (k == "PORT").then(|| "eighty".to_owned()))
            .expect_err("not a port");
        assert!(err.to_string().contains("PORT"));
    }
}
