//! HTTP plumbing for the Kaggle RPC API: endpoint checks, authentication, bounded retries
//! with backoff, and mapping of HTTP answers to [`KaggleError`]s.
//! Signed storage URLs (downloads and blob uploads) go through [`StorageClient`], which never
//! sends Kaggle credentials.

use super::credentials::Auth;
use super::error::{one_line, KaggleError};
use super::redact::{bounded_scrub, Redactor};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

/// Largest API answer read (the output list carries the whole run log inline).
pub const MAX_ANSWER_BYTES: u64 = 32 * 1024 * 1024;
/// How much of an error answer is read for its message.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;
/// Longest server message shown in an error.
const MAX_DETAIL_CHARS: usize = 300;

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
pub fn check_endpoint(raw: &str) -> Result<Url, KaggleError> {
    let bad = |detail: &str| KaggleError::InvalidEndpoint {
        endpoint: safe_endpoint_text(raw),
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

/// A URL without user info, query string or fragment (signed URLs carry signatures in the
/// query, and `user:password@` is a credential), for messages.
pub fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// A user-given endpoint for an error message: as [`display_url`] when it parses, otherwise
/// the text with anything between `://` and `@` and everything from `?` or `#` cut out.
pub fn safe_endpoint_text(raw: &str) -> String {
    if let Ok(u) = Url::parse(raw.trim()) {
        let mut shown = display_url(&u);
        if !u.username().is_empty() || u.password().is_some() {
            shown = shown.replacen("://", "://<user-info removed>@", 1);
        }
        return shown;
    }
    let mut text = raw.split(['?', '#']).next().unwrap_or("").to_string();
    if let Some(at) = text.rfind('@') {
        let start = text.find("://").map(|i| i + 3).unwrap_or(0);
        if start <= at {
            text.replace_range(start..at, "<user-info removed>");
        }
    }
    one_line(&text)
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
///
/// Every answer passes through one check: a non-2xx status, or an HTTP 200 whose JSON body is
/// Kaggle's error envelope (`{"code": >= 400, "message": ...}`), becomes the same
/// [`KaggleError`] (with the same retry rule); bodies are read with a size cap; server text
/// in errors is decoded first, then scrubbed of the credentials and cut to one line.
#[derive(Clone)]
pub struct ApiClient {
    http: Client,
    settings: Settings,
    auth: Auth,
    redactor: Redactor,
}

/// A successful answer: the body, or for a streamed call a non-JSON response still open.
pub enum Answer {
    /// The whole body (JSON answers; at most [`MAX_ANSWER_BYTES`]).
    Body(String),
    /// A streaming response (e.g. `text/event-stream`), not read yet.
    Stream(Response),
}

/// Whether a call's successful answer is read whole or may be streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Json,
    Stream,
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
    Done(Answer),
    Retry { err: KaggleError, wait: Duration },
    Fail(KaggleError),
}

impl ApiClient {
    /// A client for `settings.endpoint` authenticating with `auth`.
    pub fn new(settings: Settings, auth: Auth) -> Result<Self, KaggleError> {
        let http = build_http(&settings, &settings.endpoint, settings.timeout)?;
        let redactor = Redactor::of(&[auth.secret().expose()]);
        Ok(ApiClient {
            http,
            settings,
            auth,
            redactor,
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

    /// Server or transport text for a message: credentials removed, one line, bounded.
    fn scrub(&self, text: &str) -> String {
        bounded_scrub(&self.redactor, text, MAX_DETAIL_CHARS)
    }

    /// `": <message>"` (scrubbed) or "".
    fn detail(&self, message: &str) -> String {
        let m = self.scrub(message);
        if m.is_empty() {
            String::new()
        } else {
            format!(": {m}")
        }
    }

    /// Call an RPC (e.g. `kernels.KernelsApiService/SaveKernel`) and parse the JSON answer,
    /// which must be a JSON object (an empty body counts as `{}`). `what` names the object for
    /// "not found" messages.
    pub fn rpc<T: DeserializeOwned>(
        &self,
        method: &str,
        body: &Value,
        what: &str,
        idem: Idempotency,
    ) -> Result<T, KaggleError> {
        let call = method.rsplit('/').next().unwrap_or(method).to_string();
        let url = self.url(&format!("v1/{method}"));
        let answer = self.send_with_retries(&call, what, idem, Want::Json, || {
            self.authorize(self.http.post(url.clone()).json(body))
        })?;
        let text = match answer {
            Answer::Body(t) => t,
            Answer::Stream(r) => {
                read_capped(r, MAX_ANSWER_BYTES).map_err(|e| self.body_error(&call, 1, e))?
            }
        };
        self.parse_object(&call, &text)
    }

    fn parse_object<T: DeserializeOwned>(&self, call: &str, text: &str) -> Result<T, KaggleError> {
        let bad = |detail: String| KaggleError::BadAnswer {
            call: call.to_string(),
            detail,
        };
        let trimmed = text.trim();
        let v: Value = if trimmed.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(trimmed)
                .map_err(|e| bad(format!("{e} in {}", self.scrub(trimmed))))?
        };
        if !v.is_object() {
            return Err(bad(format!(
                "expected a JSON object, got {}",
                self.scrub(trimmed)
            )));
        }
        serde_json::from_value(v).map_err(|e| bad(self.scrub(&e.to_string())))
    }

    fn body_error(&self, call: &str, attempts: u32, e: BodyError) -> KaggleError {
        match e {
            BodyError::TooLarge(limit) => KaggleError::BadAnswer {
                call: call.to_string(),
                detail: format!("the answer is larger than {} MiB", limit / (1024 * 1024)),
            },
            BodyError::Io(e) => KaggleError::Network {
                call: call.to_string(),
                attempts,
                timed_out: e.kind() == std::io::ErrorKind::TimedOut,
                cause: self.scrub(&format!("reading the answer failed: {e}")),
            },
        }
    }

    /// `GET <endpoint>/<path>` with credentials (the log stream); retries like a safe call.
    /// A JSON answer is read whole (and checked for the error envelope); any other content
    /// type is returned as an open stream.
    pub fn get_stream(&self, path: &str, accept: &str, what: &str) -> Result<Answer, KaggleError> {
        let url = self.url(path);
        let call = format!("GET {}", display_url(&url));
        self.send_with_retries(&call, what, Idempotency::Safe, Want::Stream, || {
            self.authorize(self.http.get(url.clone()).header("Accept", accept))
        })
    }

    fn send_with_retries(
        &self,
        call: &str,
        what: &str,
        idem: Idempotency,
        want: Want,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, KaggleError> {
        let policy = &self.settings.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(call, what, idem, want, attempt, make()) {
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
        want: Want,
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
        let retry_after = retry_after(&resp);
        if status.is_success() {
            let json = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.to_ascii_lowercase().contains("json"))
                .unwrap_or(false);
            if want == Want::Stream && !json {
                return Attempt::Done(Answer::Stream(resp));
            }
            let text = match read_capped(resp, MAX_ANSWER_BYTES) {
                Ok(t) => t,
                Err(e) => {
                    let transient = matches!(e, BodyError::Io(_));
                    let err = self.body_error(call, attempt, e);
                    return if transient && idem == Idempotency::Safe {
                        Attempt::Retry {
                            err,
                            wait: policy.backoff(attempt),
                        }
                    } else {
                        Attempt::Fail(err)
                    };
                }
            };
            return match envelope_error(&text) {
                None => Attempt::Done(Answer::Body(text)),
                Some((code, message)) => {
                    let mut detail = self.detail(&message);
                    detail.push_str(&format!(" [error code {code} inside an HTTP 200 answer]"));
                    self.classify(call, what, idem, attempt, code, detail, retry_after)
                }
            };
        }
        let body = read_capped_lossy(resp, MAX_ERROR_BODY_BYTES);
        let detail = self.detail(&server_message(&body));
        self.classify(
            call,
            what,
            idem,
            attempt,
            status.as_u16(),
            detail,
            retry_after,
        )
    }

    /// The one mapping of a failure status (HTTP, or `code` of an error envelope) to an
    /// error and a retry decision.
    #[allow(clippy::too_many_arguments)]
    fn classify(
        &self,
        call: &str,
        what: &str,
        idem: Idempotency,
        attempt: u32,
        status: u16,
        detail: String,
        retry_after: Option<Duration>,
    ) -> Attempt {
        let policy = &self.settings.retry;
        let call = call.to_string();
        let wait = retry_after
            .map(|w| w.min(policy.max_wait))
            .unwrap_or_else(|| policy.backoff(attempt));
        match status {
            401 | 403 => Attempt::Fail(KaggleError::Auth {
                call,
                status,
                detail,
            }),
            404 => Attempt::Fail(KaggleError::NotFound {
                what: what.to_string(),
                call,
                detail,
            }),
            409 => Attempt::Fail(KaggleError::Conflict { call, detail }),
            429 => Attempt::Retry {
                err: KaggleError::RateLimited {
                    call,
                    attempts: attempt,
                },
                wait,
            },
            500..=599 => {
                let err = KaggleError::Server {
                    call,
                    status,
                    attempts: attempt,
                    detail,
                };
                if idem == Idempotency::Safe || status == StatusCode::SERVICE_UNAVAILABLE.as_u16() {
                    Attempt::Retry { err, wait }
                } else {
                    Attempt::Fail(err)
                }
            }
            s => Attempt::Fail(KaggleError::Http {
                call,
                status: s,
                detail,
            }),
        }
    }
}

/// Why a body could not be read.
enum BodyError {
    /// More than the limit (bytes).
    TooLarge(u64),
    /// The connection failed while reading.
    Io(std::io::Error),
}

/// Read a whole body of at most `limit` bytes (invalid UTF-8 replaced).
fn read_capped(resp: Response, limit: u64) -> Result<String, BodyError> {
    let mut buf = vec![];
    resp.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(BodyError::Io)?;
    if buf.len() as u64 > limit {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The first `limit` bytes of a body, whatever happens (for error messages).
fn read_capped_lossy(resp: Response, limit: u64) -> String {
    let mut buf = vec![];
    let _ = resp.take(limit).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Kaggle's error envelope inside a successful answer: a JSON object whose `code` (number or
/// numeric string) is 400 or more. Returns the code (capped at 599) and the message.
pub fn envelope_error(body: &str) -> Option<(u16, String)> {
    let v: Value = serde_json::from_str(body.trim()).ok()?;
    let code = match v.get("code")? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if code.is_nan() || code < 400.0 {
        return None;
    }
    let code = if code < 600.0 { code as u16 } else { 599 };
    Some((code, server_message(body)))
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

/// The message of Kaggle's `{"code", "message"}` envelope (or an `error` field), decoded, or
/// the raw body when it is not such JSON.
fn server_message(body: &str) -> String {
    serde_json::from_str::<Value>(body.trim())
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.to_string())
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
    fn message_prefers_envelope_message() {
        assert_eq!(
            server_message(r#"{"code":500,"message":"Internal error"}"#),
            "Internal error"
        );
        assert_eq!(server_message("plain"), "plain");
    }

    #[test]
    fn envelope_codes() {
        assert_eq!(
            envelope_error(r#"{"code": 400, "message": "bad"}"#),
            Some((400, "bad".into()))
        );
        assert_eq!(envelope_error(r#"{"code": "503"}"#).map(|e| e.0), Some(503));
        assert_eq!(envelope_error(r#"{"code": 70000}"#).map(|e| e.0), Some(599));
        assert_eq!(envelope_error(r#"{"code": 200, "message": "ok"}"#), None);
        assert_eq!(envelope_error(r#"{"status": "COMPLETE"}"#), None);
        assert_eq!(envelope_error("[1]"), None);
        assert_eq!(envelope_error("not json"), None);
    }

    #[test]
    fn endpoint_credentials_never_shown() {
        for raw in [
            "https://user:FAKEKEY0123456789@host.example",
            "http://user:FAKEKEY0123456789@10.0.0.1",
            "https://user:FAKEKEY0123456789@bad host",
            "https://host.example/?key=FAKEKEY0123456789",
        ] {
            let e = check_endpoint(raw).unwrap_err().to_string();
            assert!(!e.contains("FAKEKEY"), "{e}");
        }
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
