//! TLS to upstreams: which certificates are trusted for which host, and the client settings.
//!
//! rustls with the `ring` provider (TLS 1.2 and 1.3), trusting Mozilla's root certificates
//! built into the binary (`webpki-roots`, so no system CA bundle is needed). A provider's
//! `ca_file` ([`read_ca_file`]) adds roots for that provider's host only: [`ScopedVerifier`]
//! checks the other hosts against Mozilla's roots alone, so a private CA trusted for one
//! provider can never vouch for another's host. The settings are made once, at start
//! ([`tls_config`]); ALPN is added per client by the connector.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::Providers;

/// Reads a PEM file of root certificates (a provider's `ca_file`) and checks that each can be a
/// trust anchor.
///
/// # Errors
///
/// When the file cannot be read, is not PEM, holds no certificate, or holds one that cannot be
/// parsed; the message starts with the file's path.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: not a PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    let mut check = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        check
            .add(cert.clone())
            .map_err(|e| format!("{shown}: certificate {} cannot be a root: {e}", i + 1))?;
    }
    Ok(certs)
}

/// Checks server certificates against Mozilla's roots, or, for the hosts of providers with a
/// `ca_file`, against Mozilla's roots and that file's.
#[derive(Debug)]
struct ScopedVerifier {
    default: Arc<WebPkiServerVerifier>,
    /// By [`BaseUrl::tls_host`](super::BaseUrl::tls_host); a handful at most, so a list.
    scoped: Vec<(String, Arc<WebPkiServerVerifier>)>,
}

impl ScopedVerifier {
    fn for_name(&self, name: &ServerName<'_>) -> &WebPkiServerVerifier {
        if self.scoped.is_empty() {
            return &self.default;
        }
        let name = name.to_str();
        self.scoped
            .iter()
            .find(|(host, _)| host.eq_ignore_ascii_case(&name))
            .map_or(&self.default, |(_, v)| v)
    }
}

impl ServerCertVerifier for ScopedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.for_name(server_name).verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.default.supported_verify_schemes()
    }
}

/// The TLS client settings: `ring`, safe default versions (1.2 and 1.3), the
/// [`ScopedVerifier`] for these providers, and no ALPN yet (each pooled client sets its own).
pub(super) fn tls_config(providers: &Providers) -> Result<ClientConfig, String> {
    let crypto = Arc::new(rustls::crypto::ring::default_provider());
    let mozilla = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let verifier = |roots: RootCertStore| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto.clone())
            .build()
            .map_err(|e| format!("cannot set up TLS certificate checks: {e}"))
    };
    let mut extra: Vec<(String, RootCertStore)> = Vec::new();
    for p in providers.iter() {
        if p.extra_roots.is_empty() || !p.base.is_https() {
            continue;
        }
        let host = p.base.tls_host();
        let at = match extra.iter().position(|(h, _)| *h == host) {
            Some(at) => at,
            None => {
                extra.push((host, mozilla.clone()));
                extra.len() - 1
            }
        };
        for cert in &p.extra_roots {
            extra[at]
                .1
                .add(cert.clone())
                .map_err(|e| format!("provider {:?}: a CA certificate: {e}", p.name))?;
        }
    }
    let scoped = extra
        .into_iter()
        .map(|(host, roots)| Ok((host, verifier(roots)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let verifier = ScopedVerifier {
        default: verifier(mozilla)?,
        scoped,
    };
    Ok(ClientConfig::builder_with_provider(crypto.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        // `dangerous` only names the hook: the verifier is webpki's, with per-host roots.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::{BaseUrl, Provider, Transport, UpstreamService};

    #[test]
    fn ca_files_are_checked() {
        let dir = std::env::temp_dir().join(format!("abroute-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = read_ca_file(&missing).unwrap_err();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        assert!(e.contains("cannot read"), "{e}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = read_ca_file(&empty).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = read_ca_file(&garbage).unwrap_err();
        assert!(e.contains("certificate 1 cannot be a root"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_client_builds_with_and_without_extra_roots() {
        let p = |n: &str, u: &str| {
            let provider = Provider::new(n, BaseUrl::parse(u).unwrap(), None).unwrap();
            (provider, Transport::Network)
        };
        let plain = Providers::new(vec![p("a", "http://h/v1"), p("b", "https://h/v1")]);
        let config = tls_config(&plain).unwrap();
        // ALPN is each client's (`h2` and `http/1.1`, or `http/1.1` alone).
        assert!(config.alpn_protocols.is_empty());
        assert!(UpstreamService::new(Arc::new(plain), Duration::from_secs(1), true).is_ok());
    }
}
