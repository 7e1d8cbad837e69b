//! Outside channels: email over SMTP (lettre) and signed webhooks (reqwest).

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

/// POSTs `body` (JSON) to `url`, signed: `x-signature-timestamp: <unix seconds>` and
/// `x-signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub async fn send_webhook(
    http: &reqwest::Client,
    secret: &Secret,
    url: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
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
    } else {
        Err(format!("webhook answered HTTP {}", resp.status().as_u16()))
    }
}
