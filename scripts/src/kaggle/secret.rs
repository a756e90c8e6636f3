//! A string wrapper for credentials whose `Debug` and `Display` never show the value.
//! Every API key and token read by the helpers lives in a [`Secret`] until the moment it is
//! put into an `Authorization` header.

use std::fmt;

/// A credential (API key or token). Formatting it with `{}` or `{:?}` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value (surrounding whitespace is trimmed).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into().trim().to_string())
    }

    /// The clear value; only for building an `Authorization` header or redacting text.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Replace every occurrence of this secret in `text` (in clear or encoded, see
    /// [`super::redact`]) with `<redacted>`.
    pub fn scrub(&self, text: &str) -> String {
        super::redact::Redactor::of(&[&self.0]).scrub(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let s = Secret::new("  KGAT_super_secret_value \n");
        assert_eq!(s.expose(), "KGAT_super_secret_value");
        assert!(!format!("{s}").contains("super"));
        assert!(!format!("{s:?}").contains("super"));
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            key: Secret,
        }
        let h = Holder { key: s.clone() };
        assert!(!format!("{h:?}").contains("super"));
        assert!(!format!("{h:#?}").contains("super"));
    }

    #[test]
    fn scrub_removes_value() {
        let s = Secret::new("abcdef123");
        assert_eq!(
            s.scrub("x abcdef123 y abcdef123"),
            "x <redacted> y <redacted>"
        );
    }
}
