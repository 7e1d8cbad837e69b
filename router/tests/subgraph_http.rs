//! The router's HTTP client to subgraphs against subgraphs that misbehave at the HTTP
//! level: raw servers on port 0 that answer what a test tells them to, byte for byte.

mod common;

use std::sync::Arc;

use common::{StackOptions, post_json, start_stack};
use router::Config;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a raw subgraph saw: each request's head, in order (the router's health
/// probes left out).
type Seen = parking_lot::Mutex<Vec<String>>;

/// Reads one request: its head and its (`Content-Length`) body; `None` when the peer
/// left.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, buf[head_end..head_end + length].to_vec()))
}

/// A subgraph that answers every request with `answer` and then, when `close` is set,
/// hangs up.
async fn raw_subgraph(answer: Vec<u8>, close: bool) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/graphql",
        listener.local_addr().expect("local address")
    );
    let seen = Arc::new(Seen::default());
    let answer = Arc::new(answer);
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (answer, record) = (answer.clone(), record.clone());
            tokio::spawn(async move {
                while let Some((head, body)) = read_request(&mut socket).await {
                    // The router's health probes are not the requests under test.
                    let probe = body == br#"{"query":"{__typename}"}"#;
                    if !probe {
                        record.lock().push(head);
                    }
                    if socket.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn http_answer(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn json_answer(body: &str) -> Vec<u8> {
    http_answer(
        "200 OK",
        &[
            ("content-type", "application/json".to_owned()),
            ("content-length", body.len().to_string()),
        ],
        body.as_bytes(),
    )
}

/// A subgraph answering every request with the JSON `body`.
async fn json_subgraph(body: &str) -> (String, Arc<Seen>) {
    raw_subgraph(json_answer(body), false).await
}

async fn stack_with_users_at(url: String, config: Config) -> common::Stack {
    start_stack(StackOptions {
        urls: [("users", url)].into_iter().collect(),
        config: Some(config),
        ..Default::default()
    })
    .await
}

async fn me_error_code(stack: &common::Stack) -> serde_json::Value {
    let (status, resp) = post_json(
        &stack.router_url,
        json!({"query": "{ me { id name } }"}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{resp}");
    assert!(resp["data"]["me"].is_null(), "{resp}");
    resp["errors"][0]["extensions"]["code"].clone()
}

#[tokio::test]
async fn a_subgraph_request_names_its_host_and_content_and_is_answered() {
    let (url, seen) = json_subgraph(r#"{"data":{"me":{"id":"1","name":"Ann"}}}"#).await;
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches("/graphql")
        .to_owned();
    let stack = stack_with_users_at(url, Config::default()).await;
    let (status, resp) = post_json(
        &stack.router_url,
        json!({"query": "{ me { id name } }"}),
        &[("x-request-id", "raw-1")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"data": {"me": {"id": "1", "name": "Ann"}}}));
    let head = seen.lock()[0].to_ascii_lowercase();
    assert!(head.starts_with("post /graphql http/1.1\r\n"), "{head}");
    for line in [
        format!("host: {authority}"),
        "content-type: application/json".to_owned(),
        "accept: application/graphql-response+json, application/json;q=0.9".to_owned(),
        "x-request-id: raw-1".to_owned(),
    ] {
        assert!(
            head.contains(&format!("\r\n{line}\r\n")),
            "{line} in {head}"
        );
    }
}

#[tokio::test]
async fn a_redirect_from_a_subgraph_is_not_followed() {
    let (elsewhere, elsewhere_seen) =
        json_subgraph(r#"{"data":{"me":{"id":"1","name":"Mallory"}}}"#).await;
    let redirect = http_answer(
        "307 Temporary Redirect",
        &[("location", elsewhere), ("content-length", "0".to_owned())],
        b"",
    );
    let (url, seen) = raw_subgraph(redirect, false).await;
    let stack = stack_with_users_at(url, Config::default()).await;
    assert_eq!(me_error_code(&stack).await, "SUBGRAPH_BAD_RESPONSE");
    assert_eq!(seen.lock().len(), 1);
    assert!(elsewhere_seen.lock().is_empty());
}

#[tokio::test]
async fn a_chunked_answer_over_the_size_limit_is_refused_as_it_streams() {
    // A megabyte in chunks, with no Content-Length to refuse it by up front.
    let mut body = Vec::new();
    let mut chunk = |bytes: &[u8]| {
        body.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    chunk(br#"{"data":{"me":{"id":"1","name":""#);
    for _ in 0..16 {
        chunk(&[b'x'; 64 * 1024]);
    }
    chunk(br#""}}}"#);
    body.extend_from_slice(b"0\r\n\r\n");
    let answer = http_answer(
        "200 OK",
        &[
            ("content-type", "application/json".to_owned()),
            ("transfer-encoding", "chunked".to_owned()),
        ],
        &body,
    );
    let (url, _) = raw_subgraph(answer, false).await;
    let stack = stack_with_users_at(
        url,
        Config {
            max_subgraph_response_bytes: 4096,
            ..Config::default()
        },
    )
    .await;
    assert_eq!(me_error_code(&stack).await, "SUBGRAPH_BAD_RESPONSE");
}

#[tokio::test]
async fn a_subgraph_that_hangs_up_mid_answer_is_unavailable() {
    let answer = http_answer(
        "200 OK",
        &[
            ("content-type", "application/json".to_owned()),
            ("content-length", "1000".to_owned()),
        ],
        br#"{"data":{"me":{"id""#,
    );
    let (url, _) = raw_subgraph(answer, true).await;
    let stack = stack_with_users_at(url, Config::default()).await;
    assert_eq!(me_error_code(&stack).await, "SUBGRAPH_UNAVAILABLE");
    // Nothing of the broken answer stays in the pool: the next request is answered
    // the same way, not from a half-read connection.
    assert_eq!(me_error_code(&stack).await, "SUBGRAPH_UNAVAILABLE");
}
