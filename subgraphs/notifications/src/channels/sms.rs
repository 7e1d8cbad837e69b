//! SMS through a provider's HTTP API: a Twilio-compatible Messages API
//! (`POST {base}/2010-04-01/Accounts/{sid}/Messages.json`, form-encoded `To`, `From`,
//! `Body`, HTTP basic auth with the account sid and auth token).

use kit::config::{ConfigError, Secret, Vars, var_or};

use super::{Failure, set};
use crate::domain::phone;

#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// `SMS_API_URL` (default `https://api.twilio.com`): the provider's base URL.
    pub api_url: String,
    /// `SMS_ACCOUNT_SID`; unset: SMS fails with "SMS is not configured".
    pub account_sid: Option<String>,
    /// `SMS_AUTH_TOKEN`.
    pub auth_token: Option<Secret>,
    /// `SMS_FROM`: the sender (a number in E.164, or a sender id the provider knows).
    pub from: Option<String>,
}

impl SmsSettings {
    pub const VARS: &'static [&'static str] = &[
        "SMS_API_URL",
        "SMS_ACCOUNT_SID",
        "SMS_AUTH_TOKEN",
        "SMS_FROM",
    ];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let api_url = var_or(vars, "SMS_API_URL", "https://api.twilio.com".to_string())?;
        match reqwest::Url::parse(&api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => return Err(ConfigError::new("SMS_API_URL", "not an http(s) URL")),
        }
        let account_sid = set(vars, "SMS_ACCOUNT_SID");
        if account_sid
            .as_deref()
            .is_some_and(|sid| sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            return Err(ConfigError::new(
                "SMS_ACCOUNT_SID",
                "letters and digits only",
            ));
        }
        Ok(SmsSettings {
            api_url: api_url.trim_end_matches('/').to_string(),
            account_sid,
            auth_token: set(vars, "SMS_AUTH_TOKEN").map(Secret::new),
            from: set(vars, "SMS_FROM"),
        })
    }

    /// The HTTP client of the provider (configured by the operator: no address
    /// policy), no redirects.
    pub fn client(timeout: std::time::Duration) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    }
}

/// Sends `text` (kept within two segments) to `to` (E.164). A 4xx other than 429 is
/// permanent; a 429, a 5xx, a timeout or an unreachable provider is tried again.
pub async fn send_sms(
    http: &reqwest::Client,
    s: &SmsSettings,
    to: &str,
    text: &str,
) -> Result<(), Failure> {
    let (Some(sid), Some(token), Some(from)) = (&s.account_sid, &s.auth_token, &s.from) else {
        return Err(Failure::retry(
            "SMS is not configured (SMS_ACCOUNT_SID, SMS_AUTH_TOKEN, SMS_FROM)",
        ));
    };
    let url = format!("{}/2010-04-01/Accounts/{sid}/Messages.json", s.api_url);
    let body = phone::sms_text(text);
    let resp = http
        .post(url)
        .basic_auth(sid, Some(token.expose()))
        .form(&[("To", to), ("From", from.as_str()), ("Body", body.as_str())])
        .send()
        .await
        .map_err(|e| Failure::retry(format!("SMS provider unreachable: {e}")))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let detail = super::error_detail(resp).await;
    Err(Failure::of_status("the SMS provider", status, &detail))
}
