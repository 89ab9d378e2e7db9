//! rustls configurations, with the ring crypto provider on both sides.
//!
//! The client's trust, with the SDK's semantics for its connection-string options:
//!
//! ```text
//! tls_validate_certificate=true (TCP's default)  the chain must lead to a trusted root and name
//!                                                the server: the roots of tls_ca_file (PEM)
//!                                                when given, else the Mozilla roots
//! tls_validate_certificate=false (WebSocket's)   any certificate is taken (development and
//!                                                self-signed servers); the server must still
//!                                                prove it holds the certificate's key
//! ```
//!
//! The server's identity: a certificate chain and key loaded from PEM files, or a self-signed
//! certificate for `localhost` generated at start-up when asked. A generated certificate is
//! written to the certificate and key files: clients trust that file as their CA, and later
//! runs present the same certificate. The server builds its configuration once and shares it
//! with every shard, so all shards present the same certificate.
//!
//! Errors are sentences naming the file at fault, for the caller to put in context.

use std::{io::Write, path::Path, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// Names a generated certificate is valid for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The one crypto provider, ring: a much lighter build than aws-lc-rs, and what rcgen uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the PEM file at `path`, in order: at least one.
fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| format!("cannot read certificates from {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("no certificate in {}", path.display()));
    }
    Ok(certificates)
}

// ---- The client's trust ----

/// A client configuration: certificates checked against the roots of `ca_file` (or the
/// Mozilla roots) when `validate`, else taken as they come.
pub fn client_config(validate: bool, ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?;
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

/// The name the server's certificate must carry: `tls_domain`, else the host of `address`
/// (`host:port`, an IPv6 host in brackets).
pub fn server_name(tls_domain: &str, address: &str) -> Result<ServerName<'static>, String> {
    let name = if tls_domain.is_empty() {
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        host.trim_start_matches('[').trim_end_matches(']')
    } else {
        tls_domain
    };
    ServerName::try_from(name.to_owned())
        .map_err(|error| format!("invalid TLS domain {name:?}: {error}"))
}

fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let Some(path) = ca_file else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let mut store = RootCertStore::empty();
    for certificate in load_certificates(path).map_err(|error| format!("CA file: {error}"))? {
        store
            .add(certificate)
            .map_err(|error| format!("CA file {}: {error}", path.display()))?;
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

// ---- The server's identity ----

/// A certificate chain and its private key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A server configuration presenting the chain of `cert_file` with the key of `key_file`,
/// both PEM; with `self_signed` and no `cert_file` yet, a certificate for localhost is
/// generated into both files first.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    self_signed: bool,
) -> Result<Arc<ServerConfig>, String> {
    let identity = if self_signed && !cert_file.exists() {
        generate(cert_file, key_file)
    } else {
        load(cert_file, key_file)
    }?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(|error| {
            format!(
                "{} and {} do not make a usable identity: {error}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    Ok(Arc::new(config))
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
    let chain = load_certificates(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
        format!(
            "cannot read a private key from {}: {error}",
            key_file.display()
        )
    })?;
    Ok(Identity { chain, key })
}

fn generate(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
    if key_file.exists() {
        return Err(format!(
            "{} exists but {} does not; remove the key or supply the certificate",
            key_file.display(),
            cert_file.display()
        ));
    }
    let names: Vec<String> = SELF_SIGNED_NAMES
        .iter()
        .map(|name| name.to_string())
        .collect();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|error| format!("cannot generate a self-signed certificate: {error}"))?;
    // The key first, so that a certificate file on disk always has its key beside it.
    write_file(
        key_file,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(cert_file, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        cert_file = %cert_file.display(),
        key_file = %key_file.display(),
        "generated a self-signed certificate for localhost"
    );
    let key = PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(|error| format!("generated key: {error}"))?;
    Ok(Identity {
        chain: vec![generated.cert.der().clone()],
        key,
    })
}

/// Writes a new file with `mode`, creating its directory.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |error: std::io::Error| format!("cannot write {}: {error}", path.display());
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    file.write_all(contents).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn files(dir: &Path) -> (PathBuf, PathBuf) {
        (dir.join("certs/cert.pem"), dir.join("certs/key.pem"))
    }

    #[test]
    fn self_signed_is_generated_once_then_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert_file, key_file) = files(dir.path());
        server_config(&cert_file, &key_file, true).expect("generated");
        let cert = std::fs::read(&cert_file).expect("certificate written");
        let key_mode = std::fs::metadata(&key_file).expect("key written");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);
        server_config(&cert_file, &key_file, true).expect("loaded");
        assert_eq!(std::fs::read(&cert_file).expect("certificate"), cert);
        // A client trusts the generated certificate as its CA, for localhost.
        client_config(true, Some(&cert_file)).expect("the certificate as a CA");
    }

    #[test]
    fn missing_or_unusable_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (cert_file, key_file) = files(dir.path());
        let error = server_config(&cert_file, &key_file, false).expect_err("no files");
        assert!(error.contains("cert.pem"), "{error}");

        // A key without its certificate is not overwritten by a generated pair.
        std::fs::create_dir_all(key_file.parent().expect("dir")).expect("dir");
        std::fs::write(&key_file, "not a key").expect("write");
        let error = server_config(&cert_file, &key_file, true).expect_err("key alone");
        assert!(error.contains("key.pem"), "{error}");
        assert_eq!(std::fs::read(&key_file).expect("key"), b"not a key");

        std::fs::write(&cert_file, "not a certificate").expect("write");
        assert!(
            server_config(&cert_file, &key_file, true).is_err(),
            "junk PEM"
        );
        let error = client_config(true, Some(&cert_file)).expect_err("junk CA file");
        assert!(
            error.contains("CA file") && error.contains("cert.pem"),
            "{error}"
        );
    }

    #[test]
    fn the_server_name_defaults_to_the_host_of_the_address() {
        let name = |domain, address| {
            server_name(domain, address)
                .expect("valid")
                .to_str()
                .into_owned()
        };
        assert_eq!(name("", "localhost:8090"), "localhost");
        assert_eq!(name("", "[::1]:8090"), "::1");
        assert_eq!(name("example.com", "127.0.0.1:8090"), "example.com");
        assert!(server_name("", "not a name:1").is_err());
    }
}
