//! Clients of the router's streamed HTTP responses: Server-Sent Events and
//! `multipart/mixed`, read chunk by chunk as they arrive.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

/// An open streamed response.
pub struct HttpStream {
    pub status: u16,
    pub content_type: String,
    response: reqwest::Response,
    buf: String,
    /// The multipart boundary delimiter (`--` + boundary).
    delimiter: String,
    ended: bool,
}

/// POSTs a GraphQL request with `accept` and returns the open response.
pub async fn open(
    url: &str,
    accept: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> HttpStream {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", accept)
        .json(&serde_json::json!({"query": query, "variables": variables}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let response = req.send().await.expect("the router answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_owned())
        .next()
        .unwrap_or_default();
    HttpStream {
        status,
        content_type,
        response,
        buf: String::new(),
        delimiter: format!("--{boundary}"),
        ended: false,
    }
}

impl HttpStream {
    /// Reads more of the body; false at its end or after `wait`.
    async fn fill(&mut self, wait: Duration) -> bool {
        if self.ended {
            return false;
        }
        match tokio::time::timeout(wait, self.response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                self.buf.push_str(&String::from_utf8_lossy(&chunk));
                true
            }
            Ok(_) => {
                self.ended = true;
                false
            }
            Err(_) => false,
        }
    }

    /// The next SSE event (`event`, `data`), keep-alive comments skipped; `None` at the
    /// end of the stream or after `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if !event.is_empty() {
                    return Some((event, data));
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
    }

    /// The JSON of the next multipart part (heartbeats `{}` included); `None` after
    /// the closing delimiter, at the end of the stream or after `wait`.
    pub async fn next_part(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // A complete part lies between two delimiters.
            if let Some(start) = self.buf.find(&self.delimiter) {
                let after = start + self.delimiter.len();
                if self.buf[after..].starts_with("--") {
                    return None;
                }
                if let Some(next) = self.buf[after..].find(&self.delimiter) {
                    let part: String = self.buf[after..after + next].to_owned();
                    self.buf.drain(..after + next);
                    let body = part.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
                    return Some(serde_json::from_str(body).expect("each part is JSON"));
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || !self.fill(left).await {
                return None;
            }
        }
    }

    /// The next part that is not a heartbeat.
    pub async fn next_payload(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let part = self.next_part(wait).await?;
            if part != serde_json::json!({}) {
                return Some(part);
            }
        }
    }

    /// Everything left of the body, read until its end (or `wait`).
    pub async fn rest(&mut self, wait: Duration) -> String {
        while self.fill(wait).await {}
        std::mem::take(&mut self.buf)
    }
}
