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
    /// `None` when the URL does not parse: requests to it then fail as unavailable.
    uri: Option<http::Uri>,
}

impl Target {
    fn unavailable(&self, reason: &str) -> FetchError {
        FetchError::Unavailable {
            subgraph: self.name.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// hyper's pooled HTTP/1.1 client, plain or TLS by the URL's scheme.
type Http = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<Bytes>,
>;

fn http_client() -> Http {
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

pub struct SubgraphClient {
    http: Http,
    endpoints: rustc_hash::FxHashMap<String, Arc<Target>>,
    inflight: Mutex<rustc_hash::FxHashMap<DedupeKey, SharedFetch>>,
    dedupe: bool,
    /// Largest response body read from a subgraph.
    max_response_bytes: usize,
}

impl SubgraphClient {
    pub fn new(endpoints: HashMap<String, Endpoint>, dedupe: bool) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|(name, endpoint)| {
                let uri = endpoint
                    .url
                    .parse::<http::Uri>()
                    .ok()
                    .filter(|u| u.scheme().is_some() && u.host().is_some());
                let target = Target {
                    name: name.clone(),
                    endpoint,
                    uri,
                };
                (name, Arc::new(target))
            })
            .collect();
        Self {
            http: http_client(),
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

    /// Whether a subgraph answers `{ __typename }` with a success status within
    /// `timeout` (health and readiness probes).
    pub async fn probe(&self, subgraph: &str, timeout: Duration) -> bool {
        let Some(target) = self.endpoints.get(subgraph) else {
            return false;
        };
        let body = Bytes::from_static(br#"{"query":"{__typename}"}"#);
        let probe = async {
            use http_body_util::BodyExt;
            let response = Self::call(&self.http, target, body, &[]).await.ok()?;
            let up = response.status().is_success();
            // Read to the end (within the answer limit), so that the connection goes
            // back to the pool instead of being closed every probe.
            http_body_util::Limited::new(response.into_body(), self.max_response_bytes)
                .collect()
                .await
                .ok()?;
            Some(up)
        };
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
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
            .ok_or_else(|| FetchError::Unknown(subgraph.to_owned()))?;
        if !(dedupe && self.dedupe) {
            return Self::request(&self.http, target, body, headers, self.max_response_bytes).await;
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
                    let (http, target, headers, limit) = (
                        self.http.clone(),
                        target.clone(),
                        headers.clone(),
                        self.max_response_bytes,
                    );
                    let fut =
                        async move { Self::request(&http, &target, body, &headers, limit).await };
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

    /// One POST of a GraphQL body to a subgraph, answered with its response head and
    /// body stream.
    async fn call(
        http: &Http,
        target: &Target,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<http::Response<hyper::body::Incoming>, FetchError> {
        let Some(uri) = target.uri.clone() else {
            return Err(target.unavailable("invalid URL"));
        };
        let mut req = http::Request::new(http_body_util::Full::new(body));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.reserve(headers.len() + 2);
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/graphql-response+json, application/json;q=0.9"),
        );
        for (name, value) in headers {
            h.append(name.clone(), value.clone());
        }
        http.request(req).await.map_err(|e| {
            target.unavailable(if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            })
        })
    }

    /// A subgraph call within its timeout: the whole answer, body included, or why not.
    async fn request(
        http: &Http,
        target: &Target,
        body: Bytes,
        headers: &ForwardHeaders,
        limit: usize,
    ) -> Result<Bytes, FetchError> {
        let timeout = target.endpoint.timeout;
        let exchange = async {
            use http_body_util::BodyExt;
            let subgraph = &target.name;
            let response = Self::call(http, target, body, headers).await?;
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
            let declared = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(too_large());
            }
            let bytes = match http_body_util::Limited::new(response.into_body(), limit)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
                Err(_) => return Err(target.unavailable("request failed")),
            };
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
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(FetchError::Timeout {
                subgraph: target.name.clone(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            }),
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
            uri: None,
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
