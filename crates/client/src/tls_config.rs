//! The rustls client configuration a connection string asks for, with the SDK's semantics:
//!
//! ```text
//! tls_validate_certificate=true (TCP's default)  the chain must lead to a trusted root and name
//!                                                the server: the roots of tls_ca_file (PEM)
//!                                                when given, else the Mozilla roots
//! tls_validate_certificate=false (WebSocket's)   any certificate is taken (development and
//!                                                self-signed servers); the server must still
//!                                                prove it holds the certificate's key
//! ```
//! The crypto provider is ring, as the server's.

use std::sync::Arc;

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use crate::error::ClientError;

/// Builds the configuration: certificates checked against `ca_file` (or the Mozilla roots)
/// when `validate`, else taken as they come.
pub fn client_config(validate: bool, ca_file: Option<&str>) -> Result<ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Tls(error.to_string()))?;
    let config = if validate {
        builder.with_root_certificates(root_store(ca_file)?)
    } else {
        let verifier = AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    Ok(config.with_no_client_auth())
}

/// The name the server's certificate must carry: `tls_domain`, else the host of `address`.
pub fn server_name(tls_domain: &str, address: &str) -> Result<ServerName<'static>, ClientError> {
    let name = if tls_domain.is_empty() {
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        // An IPv6 literal is written [::1]:port.
        host.trim_start_matches('[').trim_end_matches(']')
    } else {
        tls_domain
    };
    ServerName::try_from(name.to_owned())
        .map_err(|error| ClientError::Tls(format!("invalid TLS domain {name:?}: {error}")))
}

fn root_store(ca_file: Option<&str>) -> Result<RootCertStore, ClientError> {
    let Some(path) = ca_file else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let unreadable =
        |error: rustls::pki_types::pem::Error| ClientError::Tls(format!("CA file {path}: {error}"));
    let mut store = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path).map_err(unreadable)? {
        store
            .add(certificate.map_err(unreadable)?)
            .map_err(|error| ClientError::Tls(format!("CA file {path}: {error}")))?;
    }
    if store.is_empty() {
        return Err(ClientError::Tls(format!(
            "CA file {path} holds no certificate"
        )));
    }
    Ok(store)
}

/// `tls_validate_certificate=false`: takes any chain for any name, but still checks the
/// handshake signatures, so the server must hold the private key of what it presents.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
