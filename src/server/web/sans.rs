//! `client_allowed_sans`: beyond chaining to a trusted CA, a client
//! certificate must carry one of the listed subject alternative names, so
//! one CA can sign for many clients and only some of them may scrape.
//!
//! As exporter-toolkit does: a name matches when it equals one of the
//! certificate's DNS names, e-mail addresses, IP addresses (as written,
//! `192.0.2.1`, `2001:db8::1`) or URIs (`spiffe://…`) exactly, and a
//! client without a certificate is refused even under
//! `VerifyClientCertIfGiven`, since it carries none.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The CA check of `inner`, then the names.
#[derive(Debug)]
pub(super) struct AllowedSans {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub allowed: Vec<String>,
}

impl AllowedSans {
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<(), Error> {
        let names = names(end_entity).ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if names.iter().any(|n| self.allowed.contains(n)) {
            return Ok(());
        }
        tracing::debug!(
            names = %names.join(","),
            "refused a client certificate without any of client_allowed_sans"
        );
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// Every subject alternative name of `cert` that `client_allowed_sans`
/// can name, as text; `None` when the certificate does not parse.
fn names(cert: &CertificateDer<'_>) -> Option<Vec<String>> {
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let Some(san) = cert.subject_alternative_name().ok()? else {
        return Some(Vec::new());
    };
    Some(
        san.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    Some(s.to_string())
                }
                GeneralName::IPAddress(bytes) => ip(bytes).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
    )
}

/// An IP address SAN's 4 or 16 bytes; an IPv4-mapped IPv6 address is
/// written as its IPv4 address, as Go writes it.
fn ip(bytes: &[u8]) -> Option<IpAddr> {
    let ip = match bytes.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(ip.to_canonical())
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// A client without a certificate carries none of the names.
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self.inner.verify_client_cert(end_entity, intermediates, now)?;
        self.check(end_entity)?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_names_are_written_as_go_writes_them() {
        assert_eq!(ip(&[192, 0, 2, 1]).unwrap().to_string(), "192.0.2.1");
        let v6: [u8; 16] = "2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(ip(&v6).unwrap().to_string(), "2001:db8::1");
        let mapped: [u8; 16] = "::ffff:192.0.2.1".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(ip(&mapped).unwrap().to_string(), "192.0.2.1");
        assert_eq!(ip(&[1, 2, 3]), None);
    }

    #[test]
    fn a_certificate_that_does_not_parse_has_no_names() {
        assert_eq!(names(&CertificateDer::from(vec![0x30, 0x03, 0x01])), None);
    }
}
