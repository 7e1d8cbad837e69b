//! A client of the legacy REST shim (`/api`) over a [`ProductStack`], for the REST and
//! first-week tests.
//!
//! ```ignore
//! let rest = Rest::start().await;
//! let ada = rest.register("ada").await;                       // POST /api/auth/register
//! let reply = rest.get("/api/expenses", &ada.token).await;
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.raw_at("/summary/totalExpenses"), "12.60"); // the exact digits
//! ```

use reqwest::Method;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::stack::{ProductStack, Session};

/// The product, and an HTTP client for its REST routes.
pub struct Rest {
    pub http: reqwest::Client,
    pub stack: ProductStack,
}

/// One REST answer: the status, the headers, the body as sent, and the body parsed
/// (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub raw: String,
    pub body: Value,
}

impl Reply {
    /// The exact JSON text at `pointer` (RFC 6901, e.g. `/summary/0/total`), so numbers
    /// can be compared digit for digit (`105.00`, not the float `105.0`).
    #[track_caller]
    pub fn raw_at(&self, pointer: &str) -> String {
        raw_at(&self.raw, pointer)
            .unwrap_or_else(|| panic!("no {pointer} in {}", self.raw))
            .to_owned()
    }

    /// Fails the test unless the status is `status`.
    #[track_caller]
    pub fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "{}", self.raw);
        self
    }
}

/// The JSON text at `pointer` inside the JSON document `text`.
pub fn raw_at<'a>(text: &'a str, pointer: &str) -> Option<&'a str> {
    let mut here: &'a RawValue = serde_json::from_str(text).ok()?;
    for token in pointer.split('/').skip(1) {
        let key = token.replace("~1", "/").replace("~0", "~");
        here = if let Ok(object) =
            serde_json::from_str::<std::collections::BTreeMap<String, &'a RawValue>>(here.get())
        {
            *object.get(&key)?
        } else {
            let list: Vec<&'a RawValue> = serde_json::from_str(here.get()).ok()?;
            *list.get(key.parse::<usize>().ok()?)?
        };
    }
    Some(here.get())
}

impl Rest {
    /// Starts the whole product (see [`ProductStack::start`]).
    pub async fn start() -> Rest {
        Self::over(ProductStack::start().await)
    }

    /// A client of a product already started (e.g. with [`ProductStack::start_with`]).
    pub fn over(stack: ProductStack) -> Rest {
        Rest {
            http: reqwest::Client::new(),
            stack,
        }
    }

    /// Sends a request with an optional bearer token, extra headers and JSON body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, self.stack.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::reply(req).await
    }

    /// Sends `body` as it is, with the given content type.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let req = self
            .http
            .request(method, self.stack.url(path))
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        Self::reply(req).await
    }

    /// `POST /api/expenses/import` of `csv` (`text/csv`) as the holder of `token`.
    pub async fn import_csv(&self, token: &str, csv: &str) -> Reply {
        self.send_bytes(
            Method::POST,
            "/api/expenses/import",
            token,
            "text/csv",
            csv.to_owned(),
        )
        .await
    }

    /// `GET path` as the holder of `token`.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.send(Method::GET, path, Some(token), &[], None).await
    }

    /// `POST path` with a JSON body as the holder of `token`.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(token), &[], Some(body))
            .await
    }

    /// `PUT path` without a body as the holder of `token`.
    pub async fn put(&self, path: &str, token: &str) -> Reply {
        self.send(Method::PUT, path, Some(token), &[], None).await
    }

    async fn reply(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("the router answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.text().await.expect("a response body");
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            raw,
            body,
        }
    }

    /// Registers `name` (`<name>@example.com`, USD) through `POST /api/auth/register`.
    pub async fn register(&self, name: &str) -> Session {
        let reply = self
            .send(
                Method::POST,
                "/api/auth/register",
                None,
                &[],
                Some(
                    json!({ "username": name, "email": format!("{name}@example.com"),
                             "password": "correct horse battery", "currency": "USD" }),
                ),
            )
            .await
            .expect(201);
        let body = reply.body;
        assert_eq!(body["user"]["username"], name);
        assert_eq!(body["user"]["currency"], "USD");
        Session {
            token: body["token"].as_str().expect("a token").to_owned(),
            user_id: body["user"]["id"].as_str().expect("a user id").to_owned(),
            username: name.to_owned(),
        }
    }
}

/// `reply` is the REST shim's error answer: `want_status`, `{error, code, details}`
/// with `code` = `want_code` and a message.
#[track_caller]
pub fn assert_error(reply: &Reply, want_status: u16, want_code: &str) {
    let body = &reply.body;
    assert_eq!(reply.status, want_status, "{}", reply.raw);
    assert_eq!(body["code"], want_code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body.get("details").is_some(), "{body}");
}
