//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! bcrypt is slow on purpose (tens of milliseconds at the usual cost, more
//! in a debug build), so: a successful check is remembered, as
//! exporter-toolkit does, and a scrape every 15 s pays it once; checks run
//! on the blocking pool, never on the thread that serves every
//! connection; and at most [`CONCURRENT_CHECKS`] run at once, so a flood of
//! wrong passwords costs those cores and no more, while clients whose
//! password is remembered are not held up at all.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use hyper::header::HeaderValue;
use serde_saphyr::Spanned;

use super::Errors;

/// Remembered successes; a full cache is emptied, not grown.
const CACHE_ENTRIES: usize = 1024;

const CONCURRENT_CHECKS: usize = 2;

pub struct BasicAuth {
    /// User name → bcrypt hash.
    users: BTreeMap<String, String>,
    /// SHA-256 of (user, hash, password) of checks that passed: the
    /// password itself is never kept.
    passed: Mutex<HashSet<[u8; 32]>>,
    checks: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// `None` when no user is configured (authentication off) or a hash is
    /// malformed (added to `errors`).
    pub(super) fn new(
        users: &BTreeMap<String, Spanned<String>>,
        errors: &mut Errors<'_>,
    ) -> Option<BasicAuth> {
        let mut ok = true;
        for (user, hash) in users {
            let path = format!("basic_auth_users.{user}");
            if user.contains(':') {
                errors.at(
                    hash,
                    path.clone(),
                    "a user name cannot contain `:` (basic authentication splits on it)",
                );
                ok = false;
            }
            if hash.value.parse::<bcrypt::HashParts>().is_err() {
                errors.at(
                    hash,
                    path,
                    "not a bcrypt hash; make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`",
                );
                ok = false;
            }
        }
        (ok && !users.is_empty()).then(|| BasicAuth {
            users: users.iter().map(|(u, h)| (u.clone(), h.value.clone())).collect(),
            passed: Mutex::new(HashSet::new()),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
        })
    }

    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Whether the `Authorization` header carries a configured user and
    /// its password.
    pub async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(credentials) else {
            return false;
        };
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash.clone()),
            // An unknown user costs as much as a known one, so that timing
            // does not tell which users exist.
            None => (false, self.users.values().next().cloned().unwrap_or_default()),
        };
        let key = cache_key(&user, &hash, &password);
        if known && self.lock().contains(&key) {
            return true;
        }
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if known && verified {
            let mut passed = self.lock();
            if passed.len() >= CACHE_ENTRIES {
                passed.clear();
            }
            passed.insert(key);
        }
        known && verified
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.passed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `Basic base64(user:password)` → (user, password).
fn credentials(header: &HeaderValue) -> Option<(String, String)> {
    let value = header.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::web::{testing::secret_hash, Web};

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    fn auth() -> BasicAuth {
        let text = format!("basic_auth_users:\n  alice: {}\n", secret_hash());
        Web::parse("web.yml", &text, std::path::Path::new("."))
            .unwrap()
            .auth
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_right_password_passes_and_is_remembered() {
        let auth = auth();
        assert!(auth.allows(Some(&header("alice", "secret"))).await);
        assert_eq!(auth.lock().len(), 1);
        assert!(auth.allows(Some(&header("alice", "secret"))).await);
        assert_eq!(auth.lock().len(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn wrong_passwords_unknown_users_and_junk_are_refused() {
        let auth = auth();
        for h in [
            Some(header("alice", "Secret")),
            Some(header("alice", "")),
            Some(header("bob", "secret")),
            Some(HeaderValue::from_static("Basic !!!")),
            Some(HeaderValue::from_static("Bearer abc")),
            Some(HeaderValue::from_static("Basic")),
            None,
        ] {
            assert!(!auth.allows(h.as_ref()).await, "{h:?}");
        }
        assert!(auth.lock().is_empty(), "failures are not remembered");
    }

    #[test]
    fn malformed_hashes_and_names_are_refused() {
        let err = Web::parse(
            "web.yml",
            "basic_auth_users:\n  alice: secret\n  \"a:b\": $2y$10$abcdefghijklmnopqrstuu5x0Z8D6u0OIu8C4a6tPZ2xqB1vOx4aG\n",
            std::path::Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("basic_auth_users.alice: not a bcrypt hash"), "{err}");
        assert!(err.contains("cannot contain `:`"), "{err}");
    }
}
