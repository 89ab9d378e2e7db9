//! The certificate a TLS listener presents: loaded from PEM files, or a self-signed one for
//! `localhost` generated at start-up when asked.
//!
//! The rustls configuration is built once by `main` and shared by every shard, so all shards
//! present the same certificate (Iggy generated one per shard, which no client could validate).
//! A self-signed certificate is written to `cert_file` / `key_file`: clients trust that file as
//! their CA, and later runs present the same certificate.

use std::{io::Write, path::Path, sync::Arc};

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::TlsConfig;

/// Names a generated certificate is valid for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate chain and its private key.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The rustls server configuration for one transport's `tls` section.
pub fn server_config(tls: &TlsConfig, transport: &str) -> Result<Arc<ServerConfig>, String> {
    let identity = if tls.self_signed && !tls.cert_file.exists() {
        generate(&tls.cert_file, &tls.key_file)
    } else {
        load(&tls.cert_file, &tls.key_file)
    }
    .map_err(|error| format!("[{transport}.tls]: {error}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("[{transport}.tls]: {error}"))?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)
        .map_err(|error| {
            format!(
                "[{transport}.tls]: {} and {} do not make a usable identity: {error}",
                tls.cert_file.display(),
                tls.key_file.display()
            )
        })?;
    Ok(Arc::new(config))
}

fn load(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
        .map_err(|error| {
            format!(
                "cannot read certificates from {}: {error}",
                cert_file.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!("no certificate in {}", cert_file.display()));
    }
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
    use super::*;

    fn section(dir: &Path, self_signed: bool) -> TlsConfig {
        TlsConfig {
            enabled: true,
            cert_file: dir.join("certs/cert.pem"),
            key_file: dir.join("certs/key.pem"),
            self_signed,
            handshake_timeout_ms: 1000,
        }
    }

    #[test]
    fn self_signed_is_generated_once_then_loaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = section(dir.path(), true);
        server_config(&tls, "tcp").expect("generated");
        let cert = std::fs::read(&tls.cert_file).expect("certificate written");
        let key_mode = std::fs::metadata(&tls.key_file).expect("key written");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);
        server_config(&tls, "tcp").expect("loaded");
        assert_eq!(std::fs::read(&tls.cert_file).expect("certificate"), cert);
    }

    #[test]
    fn missing_or_unusable_files_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = section(dir.path(), false);
        let error = server_config(&tls, "tcp").expect_err("no files");
        assert!(
            error.contains("[tcp.tls]") && error.contains("cert.pem"),
            "{error}"
        );

        // A key without its certificate is not overwritten by a generated pair.
        let tls = section(dir.path(), true);
        std::fs::create_dir_all(tls.key_file.parent().expect("dir")).expect("dir");
        std::fs::write(&tls.key_file, "not a key").expect("write");
        let error = server_config(&tls, "websocket").expect_err("key without certificate");
        assert!(error.contains("[websocket.tls]"), "{error}");
        assert_eq!(std::fs::read(&tls.key_file).expect("key"), b"not a key");

        std::fs::write(&tls.cert_file, "not a certificate").expect("write");
        assert!(server_config(&tls, "tcp").is_err(), "junk PEM");
    }
}
