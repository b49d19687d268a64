//! `--web.config.file`: TLS, client certificates, basic authentication and
//! response headers, in the web configuration format of
//! prometheus/exporter-toolkit, so the file an operator already uses for
//! node_exporter works here unchanged.
//!
//! The file is read into [`Web`], everything checked up front (certificates
//! and keys parsed, bcrypt hashes well formed, header values valid), so that
//! a broken file is refused whole with `file:line:column: path: what to fix`
//! and the running configuration stays. [`Web::fingerprint`] says when the
//! file or one of the files it names changed, so certificates renewed in
//! place are picked up too.

mod auth;
mod sans;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::sources::read_limited;
use crate::config::yaml::deserialize_located;
use crate::config::{ConfigError, ConfigErrors};
pub use auth::BasicAuth;

/// The web configuration in force: what every connection and request is
/// checked against.
#[derive(Default)]
pub struct Web {
    /// `None` serves plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// `None` lets every request in.
    pub auth: Option<BasicAuth>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The files it was read from, to notice changes.
    files: Vec<PathBuf>,
}

impl std::fmt::Debug for Web {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Web")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth.is_some())
            .field("headers", &self.headers)
            .finish()
    }
}

/// The exporter-toolkit schema. Unknown keys are refused, as the toolkit
/// refuses them, so a misspelt `basic_auth_user` does not leave the
/// endpoint open.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    /// TLS for every connection; absent serves plain HTTP.
    tls_server_config: Option<Spanned<tls::RawTls>>,
    /// HTTP-level settings.
    http_server_config: Option<Spanned<RawHttp>>,
    /// User name → bcrypt hash of the password; absent or empty turns
    /// authentication off.
    #[serde(default)]
    basic_auth_users: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the exporter speaks HTTP/1.1, which is
    /// what Prometheus scrapes with.
    http2: Option<bool>,
    /// Security headers added to every response.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
}

/// Where errors are collected, so that every problem of the file is
/// reported at once.
struct Errors<'a> {
    file: &'a str,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn at<T>(&mut self, spanned: &Spanned<T>, path: impl Into<String>, message: impl Into<String>) {
        self.list
            .push(ConfigError::at(self.file, spanned.referenced, path, message));
    }
}

/// The headers exporter-toolkit allows, with the values it allows where it
/// restricts them: anything else is more likely a typo than a wish.
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

impl Web {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Web, ConfigErrors> {
        let file = path.display().to_string();
        let text = read_limited(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::file_level(
                &file,
                format!("cannot read the web configuration: {e}; fix --web.config.file"),
            )])
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Web::parse(&file, &text, base)
    }

    /// `text` (from `file`), with relative paths taken from `base`, the
    /// file's directory, as exporter-toolkit takes them.
    fn parse(file: &str, text: &str, base: &Path) -> Result<Web, ConfigErrors> {
        let raw: RawWeb = if text.trim().is_empty() {
            // An empty file is the toolkit's "no TLS, no authentication".
            RawWeb {
                tls_server_config: None,
                http_server_config: None,
                basic_auth_users: BTreeMap::new(),
            }
        } else {
            deserialize_located(file, text).map_err(|e| ConfigErrors(vec![e]))?
        };
        let mut errors = Errors {
            file,
            list: Vec::new(),
        };
        let mut files = vec![PathBuf::from(file)];
        let tls = raw
            .tls_server_config
            .as_ref()
            .and_then(|t| tls::acceptor(t, base, &mut errors, &mut files));
        let auth = BasicAuth::new(&raw.basic_auth_users, &mut errors);
        let headers = raw
            .http_server_config
            .as_ref()
            .map(|http| headers(&http.value, &mut errors))
            .unwrap_or_default();
        if let Some(http2) = raw.http_server_config.as_ref().and_then(|h| h.value.http2) {
            if http2 {
                tracing::debug!(
                    "http_server_config.http2: serving HTTP/1.1, which is what Prometheus scrapes with"
                );
            }
        }
        if !errors.list.is_empty() {
            return Err(ConfigErrors(errors.list));
        }
        Ok(Web {
            tls,
            auth,
            headers,
            files,
        })
    }

    /// What the files this configuration came from look like now: when it
    /// differs from the one taken at load, the configuration is read again.
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.files)
    }

    /// A configuration's files, for a path whose last load failed: watched
    /// all the same, so that fixing it is noticed.
    pub fn fingerprint_of(path: &Path) -> Fingerprint {
        fingerprint(&[path.to_path_buf()])
    }

    /// One line for the log and `/`.
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "plain HTTP",
            Some(_) => "TLS",
        };
        let auth = match &self.auth {
            None => "no authentication".to_string(),
            Some(a) => format!("basic authentication ({} users)", a.users()),
        };
        format!("{tls}, {auth}")
    }
}

/// Identity (device, inode), size and modification time of each file:
/// changes when a file is edited, replaced or swapped by a symlink change
/// (Kubernetes Secrets and ConfigMaps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<Option<FileId>>);

/// Device, inode, size, modification seconds and nanoseconds.
type FileId = (u64, u64, u64, i64, i64);

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt as _;
    Fingerprint(
        files
            .iter()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
            })
            .collect(),
    )
}

fn headers(http: &RawHttp, errors: &mut Errors<'_>) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for (name, value) in &http.headers {
        let path = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) = HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(name)) else {
            let known: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            errors.at(
                value,
                path,
                format!("{name:?} cannot be set here (known: {})", known.join(", ")),
            );
            continue;
        };
        if let Some(allowed) = allowed {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value.value)) {
                errors.at(
                    value,
                    path,
                    format!(
                        "{canonical} must be one of {}, not {:?}",
                        allowed.join(", "),
                        value.value
                    ),
                );
                continue;
            }
        }
        match HeaderValue::from_str(&value.value) {
            Ok(v) => out.push((
                HeaderName::from_bytes(canonical.as_bytes()).expect("the table holds valid names"),
                v,
            )),
            Err(_) => errors.at(value, path, "not a valid header value (control characters?)"),
        }
    }
    out
}

/// The web configuration shared by the accept loop and the requests,
/// replaced whole when the file changes.
pub type SharedWeb = Arc<arc_swap::ArcSwap<Web>>;

/// Watches `path` and the files it names, every `every` and on each
/// `hangups` tick (SIGHUP), and swaps in a new configuration when they
/// changed and the new one is good; a bad one is logged with its places
/// and the running one stays.
pub async fn keep_current(
    path: PathBuf,
    shared: SharedWeb,
    every: std::time::Duration,
    mut hangups: tokio::sync::watch::Receiver<u64>,
) {
    let mut seen = shared.load().fingerprint();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            changed = hangups.changed() => {
                if changed.is_err() {
                    return;
                }
                true
            }
        };
        let now = fingerprint_now(&path, &shared);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let loaded = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Web::load(&path)).await
        };
        match loaded {
            Ok(Ok(web)) => {
                tracing::info!(file = %path.display(), "web configuration loaded: {}", web.describe());
                seen = web.fingerprint();
                shared.store(Arc::new(web));
            }
            Ok(Err(errors)) => tracing::error!(
                file = %path.display(),
                "web configuration refused, the previous one stays:\n{errors}"
            ),
            Err(e) => tracing::error!("reading the web configuration: {e}"),
        }
    }
}

/// The running configuration's files, or only the path when it names none
/// yet (it failed at start).
fn fingerprint_now(path: &Path, shared: &SharedWeb) -> Fingerprint {
    let web = shared.load();
    if web.files.is_empty() {
        Web::fingerprint_of(path)
    } else {
        web.fingerprint()
    }
}

#[cfg(test)]
pub(super) mod testing {
    /// bcrypt of "secret" at the lowest cost, so tests stay fast.
    pub fn secret_hash() -> String {
        bcrypt::hash("secret", 4).expect("bcrypt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &Path) -> Result<Web, String> {
        Web::parse("web.yml", text, base).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_serves_plain_http_without_authentication() {
        let web = parse("", Path::new(".")).unwrap();
        assert!(web.tls.is_none() && web.auth.is_none() && web.headers.is_empty());
    }

    #[test]
    fn errors_name_the_place_and_every_problem_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let text = "\
tls_server_config:
  cert_file: missing.crt
  key_file: missing.key
  min_version: TLS10
basic_auth_users:
  alice: not-a-hash
http_server_config:
  headers:
    X-Frame-Options: allow
    X-Powered-By: me
";
        let err = parse(text, dir.path()).unwrap_err();
        for expected in [
            "web.yml:2:14: tls_server_config.cert_file: cannot read",
            "web.yml:4:16: tls_server_config.min_version: TLS10 is not offered",
            "web.yml:6:10: basic_auth_users.alice: not a bcrypt hash",
            "web.yml:9:22: http_server_config.headers.X-Frame-Options: X-Frame-Options must be one of deny, sameorigin",
            "web.yml:10:19: http_server_config.headers.X-Powered-By: \"X-Powered-By\" cannot be set here",
        ] {
            assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let err = parse("basic_auth_user:\n  alice: x\n", Path::new(".")).unwrap_err();
        assert!(err.starts_with("web.yml:1:1"), "{err}");
        assert!(err.contains("unknown field `basic_auth_user`"), "{err}");
    }

    #[test]
    fn oversized_files_are_refused_before_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(
            &path,
            vec![b'#'; (crate::config::sources::MAX_CONFIG_BYTES + 1) as usize],
        )
        .unwrap();
        let err = Web::load(&path).unwrap_err().to_string();
        assert!(err.contains("more than the 1048576"), "{err}");
    }
}
