//! HTTP plumbing for the Kaggle RPC API: endpoint checks, authentication, bounded retries
//! with backoff, and mapping of HTTP answers to [`KaggleError`]s.
//! Signed storage URLs (downloads and blob uploads) go through [`StorageClient`], which never
//! sends Kaggle credentials.

use super::credentials::Auth;
use super::error::{one_line, KaggleError};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::IpAddr;
use std::time::Duration;

/// Production API host.
pub const DEFAULT_ENDPOINT: &str = "https://api.kaggle.com";
/// Environment variable naming another API host (same as `--endpoint`).
pub const ENDPOINT_ENV: &str = "KAGGLE_HELPERS_ENDPOINT";
/// Environment variable: base backoff delay in milliseconds (default 1000).
pub const BACKOFF_ENV: &str = "KAGGLE_HELPERS_BACKOFF_MS";
/// Environment variable: maximum attempts per request (default 6).
pub const RETRIES_ENV: &str = "KAGGLE_HELPERS_RETRIES";
/// Environment variable: per-request timeout in seconds (default 60).
pub const TIMEOUT_ENV: &str = "KAGGLE_HELPERS_TIMEOUT_S";
/// Environment variable: how long after a run starts a 404 means "not yet" (default 300 s).
pub const NOT_YET_ENV: &str = "KAGGLE_HELPERS_NOT_YET_S";
/// Environment variable: longest single wait between retries in seconds (default 120).
pub const MAX_WAIT_ENV: &str = "KAGGLE_HELPERS_MAX_WAIT_S";

/// How often and how long to retry transient failures.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts (first try included).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each later one.
    pub base: Duration,
    /// Cap on any single wait, also on a server's `Retry-After`.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
        self.base.saturating_mul(factor).min(self.max_wait)
    }
}

/// Connection settings shared by every helper.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API base URL (no trailing slash); RPC paths are `<endpoint>/v1/<Service>/<Method>`.
    pub endpoint: Url,
    /// Retry behaviour for transient errors.
    pub retry: RetryPolicy,
    /// Timeout of one request (connect, and each read or write).
    pub timeout: Duration,
    /// Window after a run starts during which 404 means "not visible yet".
    pub not_yet_window: Duration,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    /// Settings for `endpoint` (or the production host) with tunables from the environment.
    pub fn from_env(endpoint: Option<&str>) -> Result<Self, KaggleError> {
        let endpoint = check_endpoint(endpoint.unwrap_or(DEFAULT_ENDPOINT))?;
        Ok(Settings {
            endpoint,
            retry: RetryPolicy {
                max_attempts: env_u64(RETRIES_ENV, 6).clamp(1, 100) as u32,
                base: Duration::from_millis(env_u64(BACKOFF_ENV, 1000)),
                max_wait: Duration::from_secs(env_u64(MAX_WAIT_ENV, 120)),
            },
            timeout: Duration::from_secs(env_u64(TIMEOUT_ENV, 60).max(1)),
            not_yet_window: Duration::from_secs(env_u64(NOT_YET_ENV, 300)),
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false),
        None => false,
    }
}

/// Accept https URLs, and http only for loopback hosts; no user info, query or fragment.
/// Errors show the endpoint without its user info and query (where credentials would be).
pub fn check_endpoint(raw: &str) -> Result<Url, KaggleError> {
    let bad = |detail: &str| KaggleError::InvalidEndpoint {
        endpoint: endpoint_for_messages(raw),
        detail: detail.to_string(),
    };
    let url = Url::parse(raw.trim()).map_err(|e| bad(&format!("not a URL ({e})")))?;
    check_url_scheme(&url).map_err(|d| bad(&d))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials inside the URL are not allowed"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("query strings and fragments are not allowed"));
    }
    let trimmed = url.as_str().trim_end_matches('/').to_string();
    Url::parse(&trimmed).map_err(|e| bad(&e.to_string()))
}

/// `raw` without user info, query and fragment: `https://user:KEY@host/?t=..` -> `https://host/`.
fn endpoint_for_messages(raw: &str) -> String {
    match Url::parse(raw.trim()) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            one_line(u.as_str())
        }
        // Not a URL: drop anything up to an '@' after the scheme, and any query.
        Err(_) => {
            let t = raw.trim();
            let (scheme, rest) = t.split_once("://").unwrap_or(("", t));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            let shown = if scheme.is_empty() {
                rest.to_string()
            } else {
                format!("{scheme}://{rest}")
            };
            one_line(&shown)
        }
    }
}

/// JSON text re-serialised (escapes such as `\u0050` decoded) so scrubbing sees every secret in
/// clear; other text unchanged.
fn decoded_json(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| text.to_string())
}

/// The scheme rule for every URL we contact: https, or http on a loopback host.
pub fn check_url_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => {
            Err("plain http is only allowed for a loopback host (127.0.0.1, ::1, localhost)".into())
        }
        other => Err(format!("unsupported scheme {other:?}")),
    }
}

/// A URL without its query string (signed URLs carry signatures there), for messages.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Whether a call may be repeated after a failure that might have reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// Reads and uploads: retry 429, 5xx, network errors and timeouts.
    Safe,
    /// Starting a run: retry only 429 and connection failures (the request never arrived),
    /// so a slow answer can never start two runs.
    Once,
}

/// Authenticated client for `POST <endpoint>/v1/<Service>/<Method>` calls.
#[derive(Clone)]
pub struct ApiClient {
    http: Client,
    settings: Settings,
    auth: Auth,
}

fn user_agent() -> String {
    format!("emergence-lab-kaggle-helpers/{}", env!("CARGO_PKG_VERSION"))
}

fn build_http(settings: &Settings, url: &Url, timeout: Duration) -> Result<Client, KaggleError> {
    let mut b = Client::builder()
        .user_agent(user_agent())
        .timeout(timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if url.scheme() == "https" {
        b = b.https_only(true);
    }
    if is_loopback(url) {
        b = b.no_proxy();
    }
    b.build().map_err(|e| KaggleError::Network {
        call: "client setup".into(),
        attempts: 0,
        cause: one_line(&e.to_string()),
        timed_out: false,
    })
}

/// Outcome of one attempt, before deciding on a retry.
enum Attempt {
    Done(Response),
    Retry { err: KaggleError, wait: Duration },
    Fail(KaggleError),
}

impl ApiClient {
    /// A client for `settings.endpoint` authenticating with `auth`.
    pub fn new(settings: Settings, auth: Auth) -> Result<Self, KaggleError> {
        let http = build_http(&settings, &settings.endpoint, settings.timeout)?;
        Ok(ApiClient {
            http,
            settings,
            auth,
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn url(&self, path: &str) -> Url {
        let base = self.settings.endpoint.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}", path.trim_start_matches('/'))).expect("valid URL")
    }

    fn authorize(&self, rb: RequestBuilder) -> RequestBuilder {
        let mut value = HeaderValue::from_str(&self.auth.header_value())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        value.set_sensitive(true);
        rb.header(AUTHORIZATION, value)
    }

    fn scrub(&self, text: &str) -> String {
        one_line(&self.auth.scrub(text))
    }

    /// Call an RPC (e.g. `kernels.KernelsApiService/SaveKernel`) and parse the JSON answer.
    /// `what` names the object for "not found" messages.
    pub fn rpc<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        what: &str,
        idem: Idempotency,
    ) -> Result<T, KaggleError> {
        let call = method.rsplit('/').next().unwrap_or(method).to_string();
        let url = self.url(&format!("v1/{method}"));
        let resp = self.send_with_retries(&call, what, idem, || {
            self.authorize(self.http.post(url.clone()).json(body))
        })?;
        let text = read_capped(resp, MAX_ANSWER_BYTES).map_err(|e| match e {
            Capped::TooLarge => KaggleError::BadAnswer {
                call: call.clone(),
                detail: format!("answer larger than {} MiB", MAX_ANSWER_BYTES >> 20),
            },
            Capped::Io(e) => KaggleError::Network {
                call: call.clone(),
                attempts: 1,
                timed_out: e.kind() == std::io::ErrorKind::TimedOut,
                cause: one_line(&e.to_string()),
            },
        })?;
        let text = if text.trim().is_empty() {
            "{}".to_string()
        } else {
            text
        };
        // Kaggle sometimes answers HTTP 200 with its error envelope `{"code": 404, "message":
        // ...}`; decoded as the expected type (whose fields have defaults) it would read as a
        // normal answer (a QUEUED status, an empty file list): it is the error it says it is.
        if let Some(code) = error_envelope_code(&text) {
            return Err(status_error(
                code,
                call,
                what,
                self.scrub(&server_detail(&text)),
                1,
            ));
        }
        serde_json::from_str(&text).map_err(|e| KaggleError::BadAnswer {
            call,
            detail: format!(
                "{e} in {}",
                self.scrub(&decoded_json(&text).chars().take(200).collect::<String>())
            ),
        })
    }

    /// `GET <endpoint>/<path>` with credentials (the log stream); retries like a safe call.
    pub fn get(&self, path: &str, accept: &str, what: &str) -> Result<Response, KaggleError> {
        let url = self.url(path);
        let call = format!("GET {}", display_url(&url));
        self.send_with_retries(&call, what, Idempotency::Safe, || {
            self.authorize(self.http.get(url.clone()).header("Accept", accept))
        })
    }

    fn send_with_retries(
        &self,
        call: &str,
        what: &str,
        idem: Idempotency,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, KaggleError> {
        let policy = &self.settings.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(call, what, idem, attempt, make()) {
                Attempt::Done(r) => return Ok(r),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { err, wait } => {
                    if attempt >= policy.max_attempts {
                        return Err(err);
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }

    fn attempt(
        &self,
        call: &str,
        what: &str,
        idem: Idempotency,
        attempt: u32,
        rb: RequestBuilder,
    ) -> Attempt {
        let policy = &self.settings.retry;
        let resp = match rb.send() {
            Ok(r) => r,
            Err(e) => {
                let err = KaggleError::Network {
                    call: call.to_string(),
                    attempts: attempt,
                    cause: self.scrub(&error_chain(&e)),
                    timed_out: e.is_timeout(),
                };
                let retry = idem == Idempotency::Safe || (e.is_connect() && !e.is_timeout());
                return if retry {
                    Attempt::Retry {
                        err,
                        wait: policy.backoff(attempt),
                    }
                } else {
                    Attempt::Fail(err)
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Attempt::Done(resp);
        }
        let retry_after = retry_after(&resp);
        // Only for the message: the first 64 KiB are plenty.
        let body = read_prefix(resp, 64 << 10);
        // Decode first, then scrub: a key echoed back JSON-escaped (`\u0050...`) is in clear
        // only after decoding.
        let detail = self.scrub(&server_detail(&body));
        let err = status_error(status.as_u16(), call.to_string(), what, detail, attempt);
        let wait = retry_after
            .map(|w| w.min(policy.max_wait))
            .unwrap_or_else(|| policy.backoff(attempt));
        let retry = status == StatusCode::TOO_MANY_REQUESTS
            || (status.is_server_error()
                && (idem == Idempotency::Safe || status == StatusCode::SERVICE_UNAVAILABLE));
        if retry {
            Attempt::Retry { err, wait }
        } else {
            Attempt::Fail(err)
        }
    }
}

/// Largest RPC answer read (output listings are paged; anything bigger is not Kaggle's answer).
const MAX_ANSWER_BYTES: u64 = 32 << 20;

/// Why [`read_capped`] failed.
enum Capped {
    TooLarge,
    Io(std::io::Error),
}

/// A response body as text, reading at most `cap` bytes: larger answers are an error (never
/// read into memory whole), invalid UTF-8 is replaced.
fn read_capped(resp: Response, cap: u64) -> Result<String, Capped> {
    use std::io::Read;
    let mut buf = Vec::new();
    resp.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(Capped::Io)?;
    if buf.len() as u64 > cap {
        return Err(Capped::TooLarge);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The first `cap` bytes of a response body as text (the rest is not read).
fn read_prefix(resp: Response, cap: u64) -> String {
    use std::io::Read;
    let mut buf = Vec::new();
    let _ = resp.take(cap).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// The error for an HTTP status (or the `code` of an error envelope in a 200 answer): the one
/// mapping of statuses to error kinds, so both give the same message and hint.
fn status_error(code: u16, call: String, what: &str, detail: String, attempts: u32) -> KaggleError {
    match code {
        401 | 403 => KaggleError::Auth {
            call,
            status: code,
            detail,
        },
        404 => KaggleError::NotFound {
            what: what.to_string(),
            call,
            detail,
        },
        409 => KaggleError::Conflict { call, detail },
        429 => KaggleError::RateLimited { call, attempts },
        500..=599 => KaggleError::Server {
            call,
            status: code,
            attempts,
            detail,
        },
        _ => KaggleError::Http {
            call,
            status: code,
            detail,
        },
    }
}

/// The `code` of Kaggle's error envelope (`{"code": >= 400, "message": ...}`) when `body` is one.
fn error_envelope_code(body: &str) -> Option<u16> {
    let v: Value = serde_json::from_str(body).ok()?;
    let code = v.get("code")?.as_u64()?;
    let has_text = v.get("message").or_else(|| v.get("error")).is_some();
    (400..=599)
        .contains(&code)
        .then_some(code as u16)
        .filter(|_| has_text)
}

/// Parse `Retry-After` given in seconds (HTTP dates fall back to the backoff).
fn retry_after(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// `": <message>"` from Kaggle's `{"code", "message"}` envelope or the raw body, or "".
fn server_detail(body: &str) -> String {
    let msg = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.to_string());
    let msg = one_line(&msg);
    if msg.is_empty() {
        String::new()
    } else {
        format!(": {msg}")
    }
}

/// A transport error and its causes on one line, without the URL.
pub fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![];
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p: &String| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    // reqwest's own Display may name the URL (with a signed query): drop anything after "for url".
    let joined = parts.join(": ");
    one_line(&strip_urls(&joined))
}

fn strip_urls(text: &str) -> String {
    text.split_whitespace()
        .map(|w| {
            if w.starts_with("http://") || w.starts_with("https://") || w.starts_with("(http") {
                match Url::parse(w.trim_matches(|c| c == '(' || c == ')')) {
                    Ok(u) => display_url(&u),
                    Err(_) => w.split('?').next().unwrap_or(w).to_string(),
                }
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unauthenticated client for signed storage URLs (downloads and blob uploads).
pub struct StorageClient {
    http: Client,
    /// Retry behaviour, same as the API's.
    pub retry: RetryPolicy,
}

impl StorageClient {
    /// A client whose requests carry no Kaggle credentials; `timeout` is per connect/read/write.
    pub fn new(settings: &Settings, timeout: Duration) -> Result<Self, KaggleError> {
        // Storage hosts differ from the API host; every URL is checked with
        // `check_url_scheme` before use, so this client does not pin the scheme.
        let mut b = Client::builder()
            .user_agent(user_agent())
            .timeout(timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= 5 || check_url_scheme(attempt.url()).is_err() {
                    attempt.stop()
                } else {
                    attempt.follow()
                }
            }));
        if is_loopback(&settings.endpoint) {
            b = b.no_proxy();
        }
        let http = b.build().map_err(|e| KaggleError::Network {
            call: "client setup".into(),
            attempts: 0,
            cause: one_line(&e.to_string()),
            timed_out: false,
        })?;
        Ok(StorageClient {
            http,
            retry: settings.retry.clone(),
        })
    }

    /// The underlying HTTP client (no default headers, no credentials).
    pub fn http(&self) -> &Client {
        &self.http
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rules() {
        assert!(check_endpoint("https://api.kaggle.com").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/api").is_ok());
        assert!(check_endpoint("http://[::1]:8080").is_ok());
        assert!(check_endpoint("http://localhost:9").is_ok());
        assert!(check_endpoint("http://api.kaggle.com").is_err());
        assert!(check_endpoint("http://10.0.0.1").is_err());
        assert!(check_endpoint("ftp://127.0.0.1").is_err());
        assert!(check_endpoint("https://u:p@api.kaggle.com").is_err());
        assert!(check_endpoint("not a url").is_err());
        assert_eq!(
            check_endpoint("https://api.kaggle.com/").unwrap().as_str(),
            "https://api.kaggle.com/"
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            max_wait: Duration::from_millis(350),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn endpoints_in_messages_lose_credentials() {
        assert_eq!(
            endpoint_for_messages("https://user:SECRETKEY@host.example/api?t=SIG"),
            "https://host.example/api"
        );
        assert!(!endpoint_for_messages("ht!tp://u:SECRETKEY@host").contains("SECRETKEY"));
        let e = check_endpoint("https://user:SECRETKEY@host.example").unwrap_err();
        assert!(!e.to_string().contains("SECRETKEY"), "{e}");
        assert!(e.to_string().contains("credentials inside the URL"), "{e}");
        assert_eq!(decoded_json(r#"{"m":"\u0041B"}"#), r#"{"m":"AB"}"#);
    }

    #[test]
    fn error_envelopes_are_recognised() {
        assert_eq!(
            error_envelope_code(r#"{"code":404,"message":"Notebook not found"}"#),
            Some(404)
        );
        assert_eq!(
            error_envelope_code(r#"{"code":500,"error":"x"}"#),
            Some(500)
        );
        assert_eq!(error_envelope_code(r#"{"code":200,"message":"ok"}"#), None);
        assert_eq!(error_envelope_code(r#"{"status":"RUNNING"}"#), None);
        assert_eq!(
            error_envelope_code(r#"{"code":404}"#),
            None,
            "no message: not an envelope"
        );
        assert_eq!(error_envelope_code("not json"), None);
    }

    #[test]
    fn detail_prefers_envelope_message() {
        assert_eq!(
            server_detail(r#"{"code":500,"message":"Internal error"}"#),
            ": Internal error"
        );
        assert_eq!(server_detail(""), "");
        assert_eq!(server_detail("plain\ntext"), ": plain text");
    }

    #[test]
    fn urls_lose_their_query_in_messages() {
        let s = strip_urls(
            "error sending request for url (http://127.0.0.1:5/files/a?X-Goog-Signature=abc)",
        );
        assert!(!s.contains("Signature"), "{s}");
        assert!(s.contains("/files/a"));
    }
}
