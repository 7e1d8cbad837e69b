//! The router's shared state: the pipeline, configuration, the authenticator, metrics,
//! and the state of rate limiting, persisted queries and the last health probe. Every
//! door (HTTP, websockets, the REST shim) reads it; it depends on none of them.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub config: Config,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub extras: Extras,
}

type Limiter = governor::DefaultKeyedRateLimiter<String>;

/// Rate limiting and persisted queries.
pub struct Extras {
    pub(crate) limiter: Option<Limiter>,
    pub(crate) apq: parking_lot::Mutex<lru::LruCache<String, Arc<str>>>,
    /// sha256 hex -> query text, from the safelist manifest.
    pub(crate) safelist: HashMap<String, String>,
    /// Last subgraph probe, shown by `/health`.
    pub last_probe: parking_lot::RwLock<Option<Vec<(String, bool)>>>,
}

impl Extras {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let limiter = if config.rate_limit.enabled {
            let per_second =
                std::num::NonZeroU32::new(config.rate_limit.per_second.max(1)).expect("max(1)");
            let burst = std::num::NonZeroU32::new(config.rate_limit.burst.max(1)).expect("max(1)");
            Some(governor::RateLimiter::keyed(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ))
        } else {
            None
        };
        let mut safelist = HashMap::new();
        if let Some(path) = &config.persisted_queries.safelist_path {
            let manifest: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
            let ops = manifest.get("operations").unwrap_or(&manifest);
            if let Some(map) = ops.as_object() {
                for (hash, query) in map {
                    if let Some(q) = query
                        .as_str()
                        .or_else(|| query.get("body").and_then(Value::as_str))
                    {
                        safelist.insert(hash.clone(), q.to_owned());
                    }
                }
            } else if let Some(list) = ops.as_array() {
                for op in list {
                    if let (Some(h), Some(q)) = (
                        op.get("id").and_then(Value::as_str),
                        op.get("body").and_then(Value::as_str),
                    ) {
                        safelist.insert(h.to_owned(), q.to_owned());
                    }
                }
            }
        }
        let size = std::num::NonZeroUsize::new(config.persisted_queries.apq_cache_size.max(1))
            .expect("max(1)");
        Ok(Self {
            limiter,
            apq: parking_lot::Mutex::new(lru::LruCache::new(size)),
            safelist,
            last_probe: parking_lot::RwLock::new(None),
        })
    }
}

impl Extras {
    /// The names of the safelist's operations.
    pub fn safelisted_operation_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for query in self.safelist.values() {
            if let Ok(doc) = graphql_tools::parser::parse_query::<String>(query) {
                for d in doc.definitions {
                    if let graphql_tools::parser::query::Definition::Operation(op) = d {
                        use graphql_tools::parser::query::OperationDefinition as Op;
                        let name = match op {
                            Op::Query(q) => q.name,
                            Op::Mutation(m) => m.name,
                            Op::Subscription(s) => s.name,
                            Op::SelectionSet(_) => None,
                        };
                        names.extend(name);
                    }
                }
            }
        }
        names
    }

    /// Drops rate-limit state of clients whose buckets are full again.
    pub fn prune(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
