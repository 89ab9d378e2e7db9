//! Test certificates: a private CA and a `localhost` certificate it signed, written as PEM files
//! for the server (`cert_file`, `key_file`) and the SDK (`tls_ca_file`).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// Where the PEM files of one test's certificates are.
#[derive(Clone, Debug)]
pub struct TestCertificates {
    /// The CA clients trust.
    pub ca_file: PathBuf,
    /// The server's certificate (signed by the CA).
    pub cert_file: PathBuf,
    /// The server's private key.
    pub key_file: PathBuf,
}

impl TestCertificates {
    /// Generates a CA and a certificate for localhost and 127.0.0.1 into `dir`.
    pub fn generate(dir: &Path) -> TestCertificates {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "galgo test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-sign the CA");

        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &ca)
            .expect("sign the server certificate");

        std::fs::create_dir_all(dir).expect("create the certificate dir");
        let certificates = TestCertificates {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server_cert.pem"),
            key_file: dir.join("server_key.pem"),
        };
        std::fs::write(&certificates.ca_file, ca.pem()).expect("write ca.pem");
        std::fs::write(&certificates.cert_file, cert.pem()).expect("write server_cert.pem");
        std::fs::write(&certificates.key_file, key.serialize_pem()).expect("write server_key.pem");
        certificates
    }

    /// `--set` flags that turn on TLS for `section` ("tcp" or "websocket") with these files.
    pub fn server_flags(&self, section: &str) -> Vec<String> {
        vec![
            "--set".to_owned(),
            format!("{section}.tls.enabled=true"),
            "--set".to_owned(),
            format!(
                "{section}.tls.cert_file={:?}",
                self.cert_file.display().to_string()
            ),
            "--set".to_owned(),
            format!(
                "{section}.tls.key_file={:?}",
                self.key_file.display().to_string()
            ),
        ]
    }
}
