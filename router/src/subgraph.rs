//! HTTP transport to subgraphs: one pooled keep-alive client, per-subgraph timeouts
//! and de-duplication of identical in-flight requests.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};
use http::{HeaderName, HeaderValue};
use parking_lot::Mutex;

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("subgraph '{subgraph}' is unavailable: {reason}")]
    Unavailable { subgraph: String, reason: String },
    #[error("subgraph '{subgraph}' did not answer within {timeout_ms} ms")]
    Timeout { subgraph: String, timeout_ms: u64 },
    #[error("subgraph '{subgraph}' answered HTTP {status}")]
    BadStatus { subgraph: String, status: u16 },
    #[error("subgraph '{subgraph}' answered more than {limit} bytes")]
    TooLarge { subgraph: String, limit: usize },
    #[error("unknown subgraph '{0}'")]
    Unknown(String),
}

impl FetchError {
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Timeout { .. } => crate::error::codes::SUBGRAPH_TIMEOUT,
            FetchError::BadStatus { .. } | FetchError::TooLarge { .. } => {
                crate::error::codes::SUBGRAPH_BAD_RESPONSE
            }
            FetchError::Unavailable { .. } | FetchError::Unknown(_) => {
                crate::error::codes::SUBGRAPH_UNAVAILABLE
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: String,
    pub timeout: Duration,
}

/// Headers the router forwards to every subgraph request of one client request.
pub type ForwardHeaders = Arc<Vec<(HeaderName, HeaderValue)>>;

type SharedFetch = Shared<BoxFuture<'static, Result<Bytes, FetchError>>>;

/// What makes two subgraph requests one: the subgraph, the body and the forwarded
/// headers but the per-request ones (`x-request-id`, `traceparent`). Compared in full,
/// not by a hash alone: a hash collision must never hand one caller another's answer.
#[derive(Clone)]
struct DedupeKey {
    target: Arc<Target>,
    body: Bytes,
    headers: ForwardHeaders,
}

impl DedupeKey {
    fn shared_headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        self.headers
            .iter()
            .filter(|(name, _)| name != "x-request-id" && name != contract::telemetry::TRACEPARENT)
    }
}

impl PartialEq for DedupeKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.target, &other.target)
            && self.body == other.body
            && self.shared_headers().eq(other.shared_headers())
    }
}

impl Eq for DedupeKey {}

impl Hash for DedupeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.target), h);
        self.body.hash(h);
        for (name, value) in self.shared_headers() {
            name.as_str().hash(h);
            value.as_bytes().hash(h);
        }
    }
}

/// A subgraph's endpoint with its URL parsed once (not for every request).
struct Target {
    name: String,
    endpoint: Endpoint,
    /// `None` when the URL does not parse: requests then fail as reqwest fails them.
    url: Option<reqwest::Url>,
}

pub struct SubgraphClient {
    http: reqwest::Client,
    endpoints: rustc_hash::FxHashMap<String, Arc<Target>>,
    inflight: Mutex<rustc_hash::FxHashMap<DedupeKey, SharedFetch>>,
    dedupe: bool,
    /// Largest response body read from a subgraph.
    max_response_bytes: usize,
}

impl SubgraphClient {
    pub fn new(endpoints: HashMap<String, Endpoint>, dedupe: bool) -> Self {
        // Subgraph answers are never redirects to follow (nor is a subgraph allowed to
        // send the router elsewhere); without a redirect policy no request URL is
        // re-parsed per call.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(60))
            .build()
            .expect("a reqwest client with static options always builds");
        let endpoints = endpoints
            .into_iter()
            .map(|(name, endpoint)| {
                let url = reqwest::Url::parse(&endpoint.url).ok();
                let target = Target {
                    name: name.clone(),
                    endpoint,
                    url,
                };
                (name, Arc::new(target))
            })
            .collect();
        Self {
            http,
            endpoints,
            inflight: Mutex::new(rustc_hash::FxHashMap::default()),
            dedupe,
            max_response_bytes: usize::MAX,
        }
    }

    /// Refuses subgraph response bodies over `limit` bytes.
    pub fn with_max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    pub fn endpoint(&self, subgraph: &str) -> Option<&Endpoint> {
        self.endpoints.get(subgraph).map(|t| &t.endpoint)
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends a GraphQL request body to a subgraph. Queries (`dedupe = true`) that are
    /// byte-identical, with identical forwarded headers, share one HTTP request.
    pub async fn send(
        &self,
        subgraph: &str,
        body: Bytes,
        headers: &ForwardHeaders,
        dedupe: bool,
    ) -> Result<Bytes, FetchError> {
        let target = self
            .endpoints
            .get(subgraph)
            .ok_or_else(|| FetchError::Unknown(subgraph.to_owned()))?
            .clone();
        if !(dedupe && self.dedupe) {
            return Self::request(
                self.http.clone(),
                target,
                body,
                headers.clone(),
                self.max_response_bytes,
            )
            .await;
        }
        let key = DedupeKey {
            target: target.clone(),
            body: body.clone(),
            headers: headers.clone(),
        };
        let (shared, leader) = {
            let mut inflight = self.inflight.lock();
            match inflight.get(&key) {
                Some(existing) => (existing.clone(), false),
                None => {
                    let fut = Self::request(
                        self.http.clone(),
                        target,
                        body,
                        headers.clone(),
                        self.max_response_bytes,
                    );
                    let shared = fut.boxed().shared();
                    inflight.insert(key.clone(), shared.clone());
                    (shared, true)
                }
            }
        };
        // The leader un-registers the request when it finishes or is cancelled, so a
        // completed response is never served to later requests.
        let _guard = leader.then(|| InflightGuard {
            map: &self.inflight,
            key,
        });
        shared.await
    }

    async fn request(
        http: reqwest::Client,
        target: Arc<Target>,
        body: Bytes,
        headers: ForwardHeaders,
        limit: usize,
    ) -> Result<Bytes, FetchError> {
        let (subgraph, endpoint) = (&target.name, &target.endpoint);
        let req = match &target.url {
            Some(url) => http.post(url.clone()),
            None => http.post(endpoint.url.as_str()),
        };
        let mut req = req
            .timeout(endpoint.timeout)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::ACCEPT,
                "application/graphql-response+json, application/json;q=0.9",
            );
        for (name, value) in headers.iter() {
            req = req.header(name.clone(), value.clone());
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout {
                    subgraph: subgraph.clone(),
                    timeout_ms: u64::try_from(endpoint.timeout.as_millis()).unwrap_or(u64::MAX),
                }
            } else {
                FetchError::Unavailable {
                    subgraph: subgraph.clone(),
                    reason: if e.is_connect() {
                        "connection failed".to_owned()
                    } else {
                        "request failed".to_owned()
                    },
                }
            }
        };
        let response = req.body(body).send().await.map_err(classify)?;
        let status = response.status();
        let graphql_body = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/graphql-response+json"));
        let too_large = || FetchError::TooLarge {
            subgraph: subgraph.clone(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut response = response;
        let capacity = response
            .content_length()
            .map_or(0, |n| usize::try_from(n).unwrap_or(0).min(limit));
        let mut body = Vec::with_capacity(capacity);
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let bytes = Bytes::from(body);
        if status.is_success() || graphql_body {
            Ok(bytes)
        } else if status.is_server_error() && bytes.first() == Some(&b'{') {
            // Many servers answer 5xx with a GraphQL body; keep its errors.
            Ok(bytes)
        } else {
            Err(FetchError::BadStatus {
                subgraph: subgraph.clone(),
                status: status.as_u16(),
            })
        }
    }
}

struct InflightGuard<'a> {
    map: &'a Mutex<rustc_hash::FxHashMap<DedupeKey, SharedFetch>>,
    key: DedupeKey,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.map.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod dedupe_tests {
    use super::*;

    fn target(name: &str) -> Arc<Target> {
        Arc::new(Target {
            name: name.to_owned(),
            endpoint: Endpoint {
                url: format!("http://127.0.0.1:9/{name}"),
                timeout: Duration::from_secs(1),
            },
            url: None,
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> ForwardHeaders {
        Arc::new(
            pairs
                .iter()
                .map(|(n, v)| {
                    (
                        HeaderName::from_static(n),
                        HeaderValue::from_str(v).expect("a header value"),
                    )
                })
                .collect(),
        )
    }

    fn key(t: &Arc<Target>, body: &'static str, h: ForwardHeaders) -> DedupeKey {
        DedupeKey {
            target: t.clone(),
            body: Bytes::from_static(body.as_bytes()),
            headers: h,
        }
    }

    fn hash_of(k: &DedupeKey) -> u64 {
        let mut h = rustc_hash::FxHasher::default();
        k.hash(&mut h);
        h.finish()
    }

    #[test]
    fn only_the_same_request_of_the_same_caller_is_shared() {
        let (a, b) = (target("a"), target("b"));
        let alice = |id: &str| headers(&[("authorization", "Bearer alice"), ("x-request-id", id)]);
        let one = key(&a, "{x}", alice("1"));
        // Another request id or trace: the same request.
        let again = key(&a, "{x}", alice("2"));
        assert!(one == again && hash_of(&one) == hash_of(&again));
        let traced = key(
            &a,
            "{x}",
            headers(&[
                ("authorization", "Bearer alice"),
                (
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ]),
        );
        assert!(one == traced);
        // Another caller, body or subgraph: never shared, whatever the hashes say.
        assert!(one != key(&a, "{x}", headers(&[("authorization", "Bearer bob")])));
        assert!(one != key(&a, "{y}", alice("1")));
        assert!(one != key(&b, "{x}", alice("1")));
        assert!(one != key(&a, "{x}", headers(&[])));
    }
}
