//! Reading Kaggle's answers: bodies with a size cap, and Kaggle's error envelope
//! (`{"code": >= 400, "message": ...}`), which counts as an error even inside an HTTP 200.

use reqwest::blocking::Response;
use serde_json::Value;
use std::io::Read;

/// Largest API answer read (the output list carries the whole run log inline).
pub const MAX_ANSWER_BYTES: u64 = 32 * 1024 * 1024;
/// How much of an error answer is read for its message.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// A successful answer: the body, or for a streamed call a non-JSON response still open.
pub enum Answer {
    /// The whole body (JSON answers; at most [`MAX_ANSWER_BYTES`]).
    Body(String),
    /// A streaming response (e.g. `text/event-stream`), not read yet.
    Stream(Response),
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// More than the limit (bytes).
    TooLarge(u64),
    /// The connection failed while reading.
    Io(std::io::Error),
}

/// Read a whole body of at most `limit` bytes (invalid UTF-8 replaced).
pub(crate) fn read_capped(resp: Response, limit: u64) -> Result<String, BodyError> {
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
pub(crate) fn read_capped_lossy(resp: Response, limit: u64) -> String {
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

/// The message of Kaggle's `{"code", "message"}` envelope (or an `error` field), decoded, or
/// the raw body when it is not such JSON.
pub(crate) fn server_message(body: &str) -> String {
    serde_json::from_str::<Value>(body.trim())
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("error"))
                .and_then(|m| m.as_str().map(str::to_string))
        })
        .unwrap_or_else(|| body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
