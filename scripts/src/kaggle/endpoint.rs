//! Which URLs the helpers contact and how URLs appear in messages: https everywhere, plain
//! http only for loopback hosts, no credentials inside an endpoint URL, and URLs shown without
//! user info or query string (where signed links carry their signatures).

use super::error::{one_line, KaggleError};
use reqwest::Url;
use std::net::IpAddr;

/// True for `localhost`, 127.0.0.0/8 and ::1.
pub(crate) fn is_loopback(url: &Url) -> bool {
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
