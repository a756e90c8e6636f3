//! Finding Kaggle credentials: explicit flags, `KAGGLE_API_TOKEN`, `~/.kaggle/access_token`,
//! `KAGGLE_USERNAME`+`KAGGLE_KEY`, then `kaggle.json`, in that order of precedence.
//! Group- or world-readable credential files are tightened to 0600 and reported.

use super::error::KaggleError;
use super::secret::Secret;
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How requests authenticate.
#[derive(Debug, Clone)]
pub enum Auth {
    /// New-style API token, sent as `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// Legacy `kaggle.json` key, sent as HTTP Basic `username:key`.
    Basic {
        /// Kaggle username.
        username: String,
        /// API key.
        key: Secret,
    },
}

impl Auth {
    /// The `Authorization` header value (contains the secret: never print it).
    pub fn header_value(&self) -> String {
        match self {
            Auth::Bearer(t) => format!("Bearer {}", t.expose()),
            Auth::Basic { username, key } => {
                let raw = format!("{username}:{}", key.expose());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                )
            }
        }
    }

    /// The secret itself (API key or token).
    pub fn secret(&self) -> &Secret {
        match self {
            Auth::Bearer(t) => t,
            Auth::Basic { key, .. } => key,
        }
    }

    /// Remove the secret from `text`, in clear or encoded (its Basic header included).
    pub fn scrub(&self, text: &str) -> String {
        self.secret().scrub(text)
    }
}

/// Credentials plus where they came from.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// What to send.
    pub auth: Auth,
    /// Username when known from the source (Basic credentials always know it).
    pub username: Option<String>,
    /// Human description of the source ("KAGGLE_API_TOKEN", a file path...).
    pub source: String,
}

/// The inputs credential discovery looks at (the process environment by default).
#[derive(Debug, Clone, Default)]
pub struct CredentialEnv {
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$KAGGLE_CONFIG_DIR`.
    pub config_dir: Option<PathBuf>,
    /// `$XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `$KAGGLE_API_TOKEN` (token or path to a file holding it).
    pub api_token: Option<Secret>,
    /// `$KAGGLE_USERNAME`.
    pub username: Option<String>,
    /// `$KAGGLE_KEY`.
    pub key: Option<Secret>,
}

impl CredentialEnv {
    /// Read the process environment (empty variables count as unset).
    pub fn from_process() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        CredentialEnv {
            home: var("HOME").map(PathBuf::from),
            config_dir: var("KAGGLE_CONFIG_DIR").map(PathBuf::from),
            xdg_config_home: var("XDG_CONFIG_HOME").map(PathBuf::from),
            api_token: var("KAGGLE_API_TOKEN").map(Secret::new),
            username: var("KAGGLE_USERNAME"),
            key: var("KAGGLE_KEY").map(Secret::new),
        }
    }
}

/// Explicit credential flags (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct CredentialFlags {
    /// `--token-file PATH`: a file holding an API token.
    pub token_file: Option<PathBuf>,
    /// `--kaggle-json PATH`: a kaggle.json file.
    pub kaggle_json: Option<PathBuf>,
}

#[derive(Deserialize)]
struct KaggleJson {
    #[serde(default)]
    username: String,
    #[serde(default)]
    key: String,
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> KaggleError {
    KaggleError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Make `path` private (0600) if group or others can read it; returns a notice when changed.
#[cfg(unix)]
pub fn tighten_permissions(path: &Path) -> Result<Option<String>, KaggleError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| io_err("cannot read", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("cannot chmod 600", path, e))?;
    Ok(Some(format!(
        "{} was readable by other users (mode {:o}); changed it to 600",
        path.display(),
        mode
    )))
}

/// Non-Unix systems have no mode bits to fix.
#[cfg(not(unix))]
pub fn tighten_permissions(_path: &Path) -> Result<Option<String>, KaggleError> {
    Ok(None)
}

fn read_token_file(path: &Path, notices: &mut Vec<String>) -> Result<Secret, KaggleError> {
    if let Some(n) = tighten_permissions(path)? {
        notices.push(n);
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_err("cannot read", path, e))?;
    let token = Secret::new(text);
    if token.is_empty() || token.expose().contains(char::is_whitespace) {
        return Err(KaggleError::BadCredentialsFile {
            source_name: path.display().to_string(),
            detail: "expected exactly one token (no spaces), found none or several words".into(),
        });
    }
    Ok(token)
}

fn read_kaggle_json(path: &Path, notices: &mut Vec<String>) -> Result<Credentials, KaggleError> {
    if let Some(n) = tighten_permissions(path)? {
        notices.push(n);
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_err("cannot read", path, e))?;
    let bad = |detail: &str| KaggleError::BadCredentialsFile {
        source_name: path.display().to_string(),
        detail: detail.to_string(),
    };
    // Never echo serde's message: it may quote the file's content.
    let parsed: KaggleJson = serde_json::from_str(&text)
        .map_err(|_| bad("not valid JSON of the form {\"username\": ..., \"key\": ...}"))?;
    if parsed.username.trim().is_empty() {
        return Err(bad("`username` is missing or empty"));
    }
    if parsed.key.trim().is_empty() {
        return Err(bad("`key` is missing or empty"));
    }
    Ok(Credentials {
        auth: Auth::Basic {
            username: parsed.username.trim().to_string(),
            key: Secret::new(parsed.key),
        },
        username: Some(parsed.username.trim().to_string()),
        source: path.display().to_string(),
    })
}

/// Where `kaggle.json` is looked for: `$KAGGLE_CONFIG_DIR`, `~/.kaggle`, then
/// `$XDG_CONFIG_HOME/kaggle` (or `~/.config/kaggle`).
pub fn kaggle_json_candidates(env: &CredentialEnv) -> Vec<PathBuf> {
    let mut v = vec![];
    if let Some(d) = &env.config_dir {
        v.push(d.join("kaggle.json"));
    }
    if let Some(h) = &env.home {
        v.push(h.join(".kaggle").join("kaggle.json"));
    }
    match (&env.xdg_config_home, &env.home) {
        (Some(x), _) => v.push(x.join("kaggle").join("kaggle.json")),
        (None, Some(h)) => v.push(h.join(".config").join("kaggle").join("kaggle.json")),
        _ => {}
    }
    v
}

/// Find credentials by precedence. Returns them with notices (permission fixes) to show.
pub fn find_credentials(
    flags: &CredentialFlags,
    env: &CredentialEnv,
) -> Result<(Credentials, Vec<String>), KaggleError> {
    let mut notices = vec![];
    if let Some(p) = &flags.token_file {
        let t = read_token_file(p, &mut notices)?;
        return Ok((
            token_creds(t, format!("--token-file {}", p.display())),
            notices,
        ));
    }
    if let Some(p) = &flags.kaggle_json {
        return Ok((read_kaggle_json(p, &mut notices)?, notices));
    }
    if let Some(t) = &env.api_token {
        let as_path = PathBuf::from(t.expose());
        let looks_like_path = t.expose().contains('/') || t.expose().contains('\\');
        if as_path.is_file() {
            let tok = read_token_file(&as_path, &mut notices)?;
            let src = format!("KAGGLE_API_TOKEN (file {})", as_path.display());
            return Ok((token_creds(tok, src), notices));
        }
        if looks_like_path {
            return Err(KaggleError::BadCredentialsFile {
                source_name: "KAGGLE_API_TOKEN".into(),
                detail: "looks like a file path but no such file exists".into(),
            });
        }
        return Ok((token_creds(t.clone(), "KAGGLE_API_TOKEN".into()), notices));
    }
    if let Some(h) = &env.home {
        for name in ["access_token", "access_token.txt"] {
            let p = h.join(".kaggle").join(name);
            if p.is_file() {
                let tok = read_token_file(&p, &mut notices)?;
                return Ok((token_creds(tok, p.display().to_string()), notices));
            }
        }
    }
    if let (Some(u), Some(k)) = (&env.username, &env.key) {
        return Ok((
            Credentials {
                auth: Auth::Basic {
                    username: u.trim().to_string(),
                    key: k.clone(),
                },
                username: Some(u.trim().to_string()),
                source: "KAGGLE_USERNAME + KAGGLE_KEY".into(),
            },
            notices,
        ));
    }
    let candidates = kaggle_json_candidates(env);
    for p in &candidates {
        if p.is_file() {
            return Ok((read_kaggle_json(p, &mut notices)?, notices));
        }
    }
    let mut looked = vec![
        "--token-file/--kaggle-json".to_string(),
        "KAGGLE_API_TOKEN".into(),
        "~/.kaggle/access_token".into(),
        "KAGGLE_USERNAME+KAGGLE_KEY".into(),
    ];
    looked.extend(candidates.iter().map(|p| p.display().to_string()));
    Err(KaggleError::NoCredentials {
        looked: looked.join(", "),
    })
}

fn token_creds(token: Secret, source: String) -> Credentials {
    Credentials {
        auth: Auth::Bearer(token),
        username: None,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_in(dir: &Path) -> CredentialEnv {
        CredentialEnv {
            home: Some(dir.to_path_buf()),
            ..Default::default()
        }
    }

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn precedence_order() {
        let d = tempfile::tempdir().unwrap();
        let mut env = env_in(d.path());
        write(
            &d.path().join(".kaggle/kaggle.json"),
            r#"{"username":"jsonuser","key":"jsonkey123"}"#,
        );
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert_eq!(c.username.as_deref(), Some("jsonuser"));
        env.username = Some("envuser".into());
        env.key = Some(Secret::new("envkey123"));
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert_eq!(c.username.as_deref(), Some("envuser"));
        write(&d.path().join(".kaggle/access_token"), "filetoken123\n");
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert!(matches!(&c.auth, Auth::Bearer(t) if t.expose() == "filetoken123"));
        env.api_token = Some(Secret::new("envtoken123"));
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert!(matches!(&c.auth, Auth::Bearer(t) if t.expose() == "envtoken123"));
        let tf = d.path().join("tok");
        write(&tf, "pathtoken123");
        env.api_token = Some(Secret::new(tf.to_str().unwrap()));
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert!(matches!(&c.auth, Auth::Bearer(t) if t.expose() == "pathtoken123"));
        let flag = d.path().join("flag.json");
        write(&flag, r#"{"username":"flaguser","key":"flagkey123"}"#);
        let flags = CredentialFlags {
            kaggle_json: Some(flag),
            ..Default::default()
        };
        let (c, _) = find_credentials(&flags, &env).unwrap();
        assert_eq!(c.username.as_deref(), Some("flaguser"));
    }

    #[test]
    fn config_dir_wins_over_home() {
        let d = tempfile::tempdir().unwrap();
        let mut env = env_in(d.path());
        write(
            &d.path().join(".kaggle/kaggle.json"),
            r#"{"username":"home","key":"k1234"}"#,
        );
        write(
            &d.path().join("cfg/kaggle.json"),
            r#"{"username":"cfg","key":"k1234"}"#,
        );
        env.config_dir = Some(d.path().join("cfg"));
        let (c, _) = find_credentials(&Default::default(), &env).unwrap();
        assert_eq!(c.username.as_deref(), Some("cfg"));
    }

    #[cfg(unix)]
    #[test]
    fn readable_file_is_fixed_and_reported() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".kaggle/kaggle.json");
        write(&p, r#"{"username":"u","key":"k1234"}"#);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, notices) = find_credentials(&Default::default(), &env_in(d.path())).unwrap();
        assert_eq!(notices.len(), 1, "{notices:?}");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, notices) = find_credentials(&Default::default(), &env_in(d.path())).unwrap();
        assert!(notices.is_empty());
    }

    #[test]
    fn bad_json_does_not_leak_content() {
        let d = tempfile::tempdir().unwrap();
        write(
            &d.path().join(".kaggle/kaggle.json"),
            r#"{"username":"u","key":"SECRETVALUE"#,
        );
        let e = find_credentials(&Default::default(), &env_in(d.path())).unwrap_err();
        assert!(!format!("{e} {e:?}").contains("SECRETVALUE"));
        write(&d.path().join(".kaggle/kaggle.json"), r#"{"username":"u"}"#);
        let e = find_credentials(&Default::default(), &env_in(d.path())).unwrap_err();
        assert!(e.to_string().contains("key"));
    }

    #[test]
    fn nothing_found_lists_places() {
        let d = tempfile::tempdir().unwrap();
        let e = find_credentials(&Default::default(), &env_in(d.path())).unwrap_err();
        assert!(e.to_string().contains("kaggle.json"));
    }

    #[test]
    fn basic_header_and_scrub() {
        let a = Auth::Basic {
            username: "fake-user".into(),
            key: Secret::new("FAKEKEY123"),
        };
        let h = a.header_value();
        assert_eq!(h, "Basic ZmFrZS11c2VyOkZBS0VLRVkxMjM=");
        let s = a.scrub(&format!("echo {h} FAKEKEY123"));
        assert!(!s.contains("FAKEKEY123") && !s.contains("ZmFrZS11c2VyOkZBS0VLRVkxMjM"));
        assert!(!format!("{a:?}").contains("FAKEKEY123"));
    }
}
