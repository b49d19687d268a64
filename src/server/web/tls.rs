//! `tls_server_config` → a rustls acceptor. The names are Go's
//! (`RequireAndVerifyClientCert`, `TLS12`, `TLS_ECDHE_…`), as in every
//! exporter-toolkit file; what rustls does not offer (TLS 1.0/1.1, CBC
//! suites, accepting client certificates without verifying them) is
//! refused with what to use instead, never quietly weakened or dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::Errors;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM certificate chain, relative to the web configuration's directory.
    cert_file: Option<Spanned<String>>,
    /// PEM private key of the certificate.
    key_file: Option<Spanned<String>>,
    /// The certificate chain inline, instead of `cert_file`.
    cert: Option<Spanned<String>>,
    /// The private key inline, instead of `key_file`.
    key: Option<Spanned<String>>,
    /// `NoClientCert` (default), `VerifyClientCertIfGiven` or
    /// `RequireAndVerifyClientCert`.
    client_auth_type: Option<Spanned<String>>,
    /// PEM certificates of the CAs client certificates must chain to.
    client_ca_file: Option<Spanned<String>>,
    /// The client CAs inline, instead of `client_ca_file`.
    client_ca: Option<Spanned<String>>,
    /// Subject alternative names a client certificate must carry one of.
    client_allowed_sans: Option<Spanned<Vec<String>>>,
    /// Oldest TLS version accepted: `TLS12` (default) or `TLS13`.
    min_version: Option<Spanned<String>>,
    /// Newest TLS version accepted: `TLS13` (default) or `TLS12`.
    max_version: Option<Spanned<String>>,
    /// TLS 1.2 cipher suites offered, in Go's names; TLS 1.3 suites are
    /// not configurable (as in Go).
    cipher_suites: Option<Spanned<Vec<String>>>,
    /// Prefer the server's order of cipher suites to the client's.
    prefer_server_cipher_suites: Option<bool>,
    /// Key exchange groups offered: `X25519`, `CurveP256`, `CurveP384`.
    curve_preferences: Option<Spanned<Vec<String>>>,
}

/// The acceptor, or `None` with the reasons added to `errors`; every file
/// read is added to `files`.
pub(super) fn acceptor(
    raw: &Spanned<RawTls>,
    base: &Path,
    errors: &mut Errors<'_>,
    files: &mut Vec<PathBuf>,
) -> Option<tokio_rustls::TlsAcceptor> {
    let before = errors.list.len();
    let t = &raw.value;
    let p = |field: &str| format!("tls_server_config.{field}");

    let certs = pem_source(
        errors,
        files,
        base,
        &t.cert_file,
        &t.cert,
        "cert_file",
        "cert",
        raw,
        |bytes| CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>(),
    );
    if certs.as_ref().is_some_and(Vec::is_empty) {
        let at = t
            .cert_file
            .as_ref()
            .or(t.cert.as_ref())
            .expect("a source was read");
        errors.at(at, p("cert_file"), "no PEM certificate in it");
    }
    let key = pem_source(
        errors,
        files,
        base,
        &t.key_file,
        &t.key,
        "key_file",
        "key",
        raw,
        PrivateKeyDer::from_pem_slice,
    );

    let provider = provider(t, errors);
    let versions = versions(t, errors);
    let verifier = match (
        client_verifier(t, base, errors, files, raw, &provider),
        &t.client_allowed_sans,
    ) {
        (Some(Some(inner)), Some(sans)) if !sans.value.is_empty() => {
            let allowed = sans.value.clone();
            Some(Some(
                Arc::new(super::sans::AllowedSans { inner, allowed }) as Arc<dyn ClientCertVerifier>
            ))
        }
        (Some(verifier), Some(sans)) => {
            let message = if verifier.is_none() {
                "client_allowed_sans needs client certificates: set client_auth_type: \
                 RequireAndVerifyClientCert and client_ca_file"
            } else {
                "no name listed: list the names a client certificate may carry, or remove client_allowed_sans"
            };
            errors.at(sans, p("client_allowed_sans"), message);
            None
        }
        (verifier, _) => verifier,
    };
    if errors.list.len() != before {
        return None;
    }
    let (certs, key, provider, versions, verifier) = (certs?, key?, provider?, versions?, verifier?);
    let builder = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| errors.at(raw, p("min_version"), format!("{e}")))
        .ok()?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = match builder.with_single_cert(certs, key) {
        Ok(c) => c,
        Err(e) => {
            let at = t.key_file.as_ref().or(t.key.as_ref());
            match at {
                Some(at) => errors.at(
                    at,
                    p("key_file"),
                    format!("the key does not fit the certificate: {e}"),
                ),
                None => errors.at(raw, p("key_file"), format!("{e}")),
            }
            return None;
        }
    };
    config.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(false);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// PEM from `file` (relative to `base`) or inline `text`: exactly one of
/// them, parsed by `parse`.
#[allow(clippy::too_many_arguments)]
fn pem_source<T, E: std::fmt::Display>(
    errors: &mut Errors<'_>,
    files: &mut Vec<PathBuf>,
    base: &Path,
    file: &Option<Spanned<String>>,
    text: &Option<Spanned<String>>,
    file_field: &str,
    text_field: &str,
    raw: &Spanned<RawTls>,
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> Option<T> {
    let (bytes, at, field) = match (file, text) {
        (Some(file), None) => {
            let path = base.join(&file.value);
            files.push(path.clone());
            match std::fs::read(&path) {
                Ok(bytes) => (bytes, file, file_field),
                Err(e) => {
                    errors.at(
                        file,
                        format!("tls_server_config.{file_field}"),
                        format!("cannot read {}: {e}", path.display()),
                    );
                    return None;
                }
            }
        }
        (None, Some(text)) => (text.value.clone().into_bytes(), text, text_field),
        (Some(_), Some(text)) => {
            errors.at(
                text,
                format!("tls_server_config.{text_field}"),
                format!("give {file_field} or {text_field}, not both"),
            );
            return None;
        }
        (None, None) => {
            errors.at(
                raw,
                "tls_server_config",
                format!("{file_field} (or {text_field}) is required for TLS"),
            );
            return None;
        }
    };
    match parse(&bytes) {
        Ok(value) => Some(value),
        Err(e) => {
            errors.at(
                at,
                format!("tls_server_config.{field}"),
                format!("not valid PEM: {e}"),
            );
            None
        }
    }
}

/// rustls's ring provider narrowed to the configured suites and groups.
fn provider(t: &RawTls, errors: &mut Errors<'_>) -> Option<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    let mut ok = true;
    if let Some(wanted) = &t.cipher_suites {
        let (tls13, offered): (Vec<_>, Vec<_>) = provider
            .cipher_suites
            .iter()
            .partition(|s| s.version() == &rustls::version::TLS13);
        let mut chosen: Vec<_> = tls13.into_iter().copied().collect();
        for name in &wanted.value {
            let found = offered
                .iter()
                .find(|s| go_suite_name(s.suite()) == go_canonical(name));
            let is_tls13 = provider
                .cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13 && go_suite_name(s.suite()) == *name);
            match found {
                Some(suite) => chosen.push(**suite),
                None if is_tls13 => {}
                None => {
                    let known: Vec<String> = offered.iter().map(|s| go_suite_name(s.suite())).collect();
                    errors.at(
                        wanted,
                        "tls_server_config.cipher_suites",
                        format!("{name:?} is not offered (offered: {})", known.join(", ")),
                    );
                    ok = false;
                }
            }
        }
        provider.cipher_suites = chosen;
    }
    if let Some(wanted) = &t.curve_preferences {
        let mut chosen = Vec::new();
        for name in &wanted.value {
            let group = match name.as_str() {
                "X25519" => Some(rustls::NamedGroup::X25519),
                "CurveP256" => Some(rustls::NamedGroup::secp256r1),
                "CurveP384" => Some(rustls::NamedGroup::secp384r1),
                _ => None,
            };
            match group.and_then(|g| provider.kx_groups.iter().find(|k| k.name() == g)) {
                Some(kx) => chosen.push(*kx),
                None => {
                    errors.at(
                        wanted,
                        "tls_server_config.curve_preferences",
                        format!("{name:?} is not offered (offered: X25519, CurveP256, CurveP384)"),
                    );
                    ok = false;
                }
            }
        }
        provider.kx_groups = chosen;
    }
    ok.then_some(provider)
}

/// Go's name of a suite: rustls writes TLS 1.3 suites `TLS13_…`.
fn go_suite_name(suite: rustls::CipherSuite) -> String {
    format!("{suite:?}").replacen("TLS13_", "TLS_", 1)
}

/// Go also accepts its older names of the ChaCha20 suites, without the
/// `_SHA256`.
fn go_canonical(name: &str) -> String {
    if name.ends_with("_CHACHA20_POLY1305") {
        format!("{name}_SHA256")
    } else {
        name.to_string()
    }
}

fn versions(t: &RawTls, errors: &mut Errors<'_>) -> Option<Vec<&'static SupportedProtocolVersion>> {
    let mut parse = |field: &str, value: &Option<Spanned<String>>, default: u8| -> Option<u8> {
        let Some(v) = value else { return Some(default) };
        match v.value.as_str() {
            "TLS12" => Some(2),
            "TLS13" => Some(3),
            "TLS10" | "TLS11" => {
                errors.at(
                    v,
                    format!("tls_server_config.{field}"),
                    format!(
                        "{} is not offered: TLS 1.0 and 1.1 are broken; use TLS12 or TLS13",
                        v.value
                    ),
                );
                None
            }
            other => {
                errors.at(
                    v,
                    format!("tls_server_config.{field}"),
                    format!("unknown TLS version {other:?}; use TLS12 or TLS13"),
                );
                None
            }
        }
    };
    let min = parse("min_version", &t.min_version, 2);
    let max = parse("max_version", &t.max_version, 3);
    let (min, max) = (min?, max?);
    let versions: Vec<_> = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, version)| version)
        .collect();
    if versions.is_empty() {
        if let Some(at) = &t.max_version {
            errors.at(at, "tls_server_config.max_version", "is older than min_version");
        }
        return None;
    }
    Some(versions)
}

/// `Some(None)` for no client certificates, `Some(Some(verifier))` to ask
/// for them, `None` on errors.
fn client_verifier(
    t: &RawTls,
    base: &Path,
    errors: &mut Errors<'_>,
    files: &mut Vec<PathBuf>,
    raw: &Spanned<RawTls>,
    provider: &Option<CryptoProvider>,
) -> Option<Option<Arc<dyn ClientCertVerifier>>> {
    let path = "tls_server_config.client_auth_type";
    let mode = t
        .client_auth_type
        .as_ref()
        .map_or("NoClientCert", |m| m.value.as_str());
    let required = match mode {
        "NoClientCert" => {
            if let Some(ca) = t.client_ca_file.as_ref().or(t.client_ca.as_ref()) {
                errors.at(
                    ca,
                    "tls_server_config.client_ca_file",
                    "client CAs are set but client_auth_type is NoClientCert; \
                     set client_auth_type: RequireAndVerifyClientCert (or VerifyClientCertIfGiven)",
                );
                return None;
            }
            return Some(None);
        }
        "VerifyClientCertIfGiven" => false,
        "RequireAndVerifyClientCert" => true,
        "RequestClientCert" | "RequireAnyClientCert" => {
            let at = t
                .client_auth_type
                .as_ref()
                .expect("a mode other than the default was given");
            errors.at(
                at,
                path,
                format!(
                    "{mode} accepts client certificates without verifying them, which authenticates nobody; \
                     use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
                ),
            );
            return None;
        }
        other => {
            let at = t
                .client_auth_type
                .as_ref()
                .expect("a mode other than the default was given");
            errors.at(
                at,
                path,
                format!(
                    "unknown client_auth_type {other:?} (known: NoClientCert, VerifyClientCertIfGiven, \
                     RequireAndVerifyClientCert)"
                ),
            );
            return None;
        }
    };
    if t.client_ca_file.is_none() && t.client_ca.is_none() {
        let message = format!("{mode} needs client_ca_file, the CAs client certificates are checked against");
        match &t.client_auth_type {
            Some(at) => errors.at(at, path, message),
            None => errors.at(raw, path, message),
        }
        return None;
    }
    let cas = pem_source(
        errors,
        files,
        base,
        &t.client_ca_file,
        &t.client_ca,
        "client_ca_file",
        "client_ca",
        raw,
        |bytes| CertificateDer::pem_slice_iter(bytes).collect::<Result<Vec<_>, _>>(),
    )?;
    let mut roots = RootCertStore::empty();
    let at = t
        .client_ca_file
        .as_ref()
        .or(t.client_ca.as_ref())
        .expect("checked above");
    for ca in cas {
        if let Err(e) = roots.add(ca) {
            errors.at(
                at,
                "tls_server_config.client_ca_file",
                format!("not a usable CA certificate: {e}"),
            );
            return None;
        }
    }
    if roots.is_empty() {
        errors.at(at, "tls_server_config.client_ca_file", "no PEM certificate in it");
        return None;
    }
    let provider = provider.clone()?;
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider));
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    match builder.build() {
        Ok(v) => Some(Some(v)),
        Err(e) => {
            errors.at(at, "tls_server_config.client_ca_file", format!("{e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_names_of_the_offered_suites() {
        let names: Vec<String> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| go_suite_name(s.suite()))
            .collect();
        for expected in [
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        ] {
            assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
        }
        assert_eq!(
            go_canonical("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"),
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        );
    }
}
