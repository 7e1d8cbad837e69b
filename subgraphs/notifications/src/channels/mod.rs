//! Outside channels: email over SMTP (lettre), signed webhooks (reqwest), Web Push
//! ([`push`]) and SMS through a provider's HTTP API ([`sms`]).

pub mod push;
pub mod sms;

use std::time::Duration;

use kit::config::{ConfigError, Secret, Vars, var_or};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::domain;

/// `SMTP_TLS`: `none` (plain, e.g. a local relay), `starttls` (default) or `tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    None,
    StartTls,
    Tls,
}

impl std::str::FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Tls),
            o => Err(format!("expected none, starttls or tls, got {o:?}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// `SMTP_HOST`; unset: email deliveries fail with "email is not configured".
    pub host: Option<String>,
    /// `SMTP_PORT` (default 587).
    pub port: u16,
    pub tls: TlsMode,
    /// `SMTP_USERNAME` / `SMTP_PASSWORD` (optional).
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `SMTP_FROM` (default `Smart Expense Tracker <no-reply@localhost>`).
    pub from: String,
    /// `SMTP_TIMEOUT_MS` (default 10000).
    pub timeout: Duration,
}

impl SmtpSettings {
    pub const VARS: &'static [&'static str] = &[
        "SMTP_HOST",
        "SMTP_PORT",
        "SMTP_TLS",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SMTP_FROM",
        "SMTP_TIMEOUT_MS",
    ];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let from = var_or(
            vars,
            "SMTP_FROM",
            "Smart Expense Tracker <no-reply@localhost>".to_string(),
        )?;
        if from.parse::<Mailbox>().is_err() {
            return Err(ConfigError::new("SMTP_FROM", "not a mailbox"));
        }
        Ok(SmtpSettings {
            host: vars.get("SMTP_HOST"),
            port: var_or(vars, "SMTP_PORT", 587)?,
            tls: var_or(vars, "SMTP_TLS", TlsMode::StartTls)?,
            username: vars.get("SMTP_USERNAME"),
            password: vars.get("SMTP_PASSWORD").map(Secret::new),
            from,
            timeout: Duration::from_millis(var_or(vars, "SMTP_TIMEOUT_MS", 10_000u64)?),
        })
    }
}

/// The value of variable `name`, `None` when unset or empty (as a compose file's
/// `${NAME:-}` leaves it).
pub fn set(vars: &(impl Vars + ?Sized), name: &str) -> Option<String> {
    vars.get(name).filter(|v| !v.trim().is_empty())
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The delivery's failure reason.
    pub reason: String,
    /// True when no later attempt can succeed (the delivery is given up at once).
    pub permanent: bool,
}

impl Failure {
    /// A failure that a later attempt may not meet (a timeout, a 5xx, a 429).
    pub fn retry(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: false,
        }
    }

    /// A failure that every later attempt would meet too.
    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            permanent: true,
        }
    }

    /// A provider's answer `status` (not a success) to a request for `what`: a 4xx
    /// other than 429 is permanent; a 429, a 5xx or anything else is tried again.
    pub fn of_status(what: &str, status: reqwest::StatusCode, detail: &str) -> Failure {
        let detail = detail.trim();
        let reason = if detail.is_empty() {
            format!("{what} answered HTTP {}", status.as_u16())
        } else {
            let detail: String = detail.chars().take(200).collect();
            format!("{what} answered HTTP {}: {detail}", status.as_u16())
        };
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            Failure::permanent(reason)
        } else {
            Failure::retry(reason)
        }
    }
}

/// The start of a provider's refusal (its first 1 KiB, read no further): the body is
/// the provider's to choose, push endpoints are the user's, and a refusal may never end.
pub async fn error_detail(mut resp: reqwest::Response) -> String {
    const MAX: usize = 1024;
    let mut read = Vec::new();
    while read.len() < MAX {
        match resp.chunk().await {
            Ok(Some(chunk)) => read.extend_from_slice(&chunk[..chunk.len().min(MAX - read.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&read).into_owned()
}

/// Sends one email; the error text is the delivery's failure reason.
pub async fn send_email(
    s: &SmtpSettings,
    to: &str,
    subject: &str,
    body: &str,
) -> Result<(), String> {
    let host = s
        .host
        .as_deref()
        .ok_or("email is not configured (SMTP_HOST)")?;
    let from: Mailbox = s.from.parse().map_err(|e| format!("SMTP_FROM: {e}"))?;
    let to: Mailbox = to.parse().map_err(|e| format!("bad address: {e}"))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_string())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let builder = match s.tls {
        TlsMode::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        TlsMode::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| format!("SMTP TLS setup: {e}"))?,
        TlsMode::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| format!("SMTP TLS setup: {e}"))?,
    };
    let mut builder = builder.port(s.port).timeout(Some(s.timeout));
    if let (Some(u), Some(p)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.expose().to_string()));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP: {e}"))
}

/// Header names of a webhook call.
pub const SIGNATURE_HEADER: &str = "x-signature";
pub const TIMESTAMP_HEADER: &str = "x-signature-timestamp";

/// Where user-given URLs (webhooks, push endpoints) may go. Deliveries resolve the host
/// themselves and connect only to public addresses: loopback, private, link-local,
/// CGNAT, unspecified, multicast, documentation and cloud-metadata addresses are
/// refused after DNS (so a name that points inside is refused too), IP literals the
/// same, and redirects are never followed. An allow-list (`WEBHOOK_ALLOW_HOSTS`,
/// `PUSH_ALLOW_HOSTS`: comma-separated host names or addresses) lets named hosts
/// through anyway, for local development and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow_hosts: Vec<String>,
}

/// The policy of webhook URLs (`WEBHOOK_ALLOW_HOSTS`).
pub type WebhookPolicy = OutboundPolicy;

impl OutboundPolicy {
    pub const VARS: &'static [&'static str] = &["WEBHOOK_ALLOW_HOSTS"];

    /// The webhooks' policy (`WEBHOOK_ALLOW_HOSTS`).
    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> OutboundPolicy {
        OutboundPolicy::from_var(vars, "WEBHOOK_ALLOW_HOSTS")
    }

    /// A policy whose allow-list is the variable `name`.
    pub fn from_var(vars: &(impl Vars + ?Sized), name: &str) -> OutboundPolicy {
        OutboundPolicy {
            allow_hosts: vars
                .get(name)
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// True when `host` is on the allow-list.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.allow_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }

    /// The HTTP client of deliveries under this policy: its resolver, no redirects.
    pub fn client(&self, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(PublicOnly(self.clone())))
            .build()
            .unwrap_or_default()
    }

    /// Refuses a URL whose host is an address this policy does not reach (names are
    /// checked when they are resolved).
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        let host = parsed.host_str().unwrap_or_default();
        if self.allows(host) {
            return Ok(());
        }
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        match literal.parse::<std::net::IpAddr>() {
            Ok(ip) if !is_public(ip) => Err(format!("address {ip} is not public")),
            _ if host.eq_ignore_ascii_case("localhost") => {
                Err("host localhost is not public".into())
            }
            _ => Ok(()),
        }
    }
}

/// True for an address on the public internet.
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// A resolver that answers only public addresses (or any, for an allowed host).
struct PublicOnly(OutboundPolicy);

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.0.allows(&host);
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("host {host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// POSTs `body` (JSON) to `url`, signed: `x-signature-timestamp: <unix seconds>` and
/// `x-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub async fn send_webhook(
    http: &reqwest::Client,
    policy: &WebhookPolicy,
    secret: &Secret,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    policy.check_url(url).map_err(|e| format!("webhook {e}"))?;
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let ts = chrono::Utc::now().timestamp();
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(SIGNATURE_HEADER, domain::sign(secret.expose(), ts, &bytes))
        .body(bytes)
        .send()
        .await
        .map_err(|e| format!("webhook unreachable: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else if resp.status().is_redirection() {
        Err(format!(
            "webhook answered a redirect (HTTP {}); redirects are not followed",
            resp.status().as_u16()
        ))
    } else {
        Err(format!("webhook answered HTTP {}", resp.status().as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(inside.parse().unwrap()), "{inside}");
        }
        for outside in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(outside.parse().unwrap()), "{outside}");
        }
    }

    #[test]
    fn literal_inside_addresses_are_refused_unless_allowed() {
        let policy = WebhookPolicy::default();
        assert!(policy.check_url("http://169.254.169.254/latest").is_err());
        assert!(policy.check_url("http://[::1]:8080/x").is_err());
        assert!(policy.check_url("http://localhost:8080/x").is_err());
        assert!(policy.check_url("https://hooks.example.com/x").is_ok());
        let local = WebhookPolicy {
            allow_hosts: vec!["127.0.0.1".into()],
        };
        assert!(local.check_url("http://127.0.0.1:9/x").is_ok());
    }
}
