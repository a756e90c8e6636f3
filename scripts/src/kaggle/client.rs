//! HTTP plumbing for the Kaggle RPC API: endpoint checks, authentication, bounded retries
//! with backoff, and mapping of HTTP answers to [`KaggleError`]s.
//! Signed storage URLs (downloads and blob uploads) go through [`StorageClient`], which never
//! sends Kaggle credentials.

use super::answer::{envelope_error, read_capped, read_capped_lossy, server_message, BodyError};
use super::credentials::Auth;
use super::endpoint::is_loopback;
use super::error::{one_line, KaggleError};
use super::redact::{bounded_scrub, Redactor};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

pub use super::answer::{Answer, MAX_ANSWER_BYTES, MAX_ERROR_BODY_BYTES};
pub use super::endpoint::{
    check_endpoint, check_url_scheme, display_url, error_chain, safe_endpoint_text,
};

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
}
