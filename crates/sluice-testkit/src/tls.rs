//! A private certificate authority for the HTTPS tests: a CA, and a server
//! certificate it signed for `127.0.0.1` and `localhost`, as PEM files.

use std::path::{Path, PathBuf};

/// The PEM files [`private_ca`] wrote.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA's certificate: what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (`--tls-cert`).
    pub cert: PathBuf,
    /// The server's private key (`--tls-key`).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate it signed, and writes them to
/// `ca.pem`, `server.pem` and `server.key` in `dir`.
pub fn private_ca(dir: &Path) -> TlsFiles {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sluice test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    for (path, pem) in [
        (&files.ca, ca.pem()),
        (&files.cert, cert.pem()),
        (&files.key, key.serialize_pem()),
    ] {
        std::fs::write(path, pem)
            .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
    }
    files
}
