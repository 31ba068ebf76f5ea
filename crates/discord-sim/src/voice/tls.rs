//! The voice gateway's TLS: songbird only dials `wss://`, so the simulator makes a CA at start
//! and a certificate it signs; a client trusts the CA through `SSL_CERT_FILE`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;

/// The voice gateway's TLS identity: a CA made for this simulator and a certificate it signed
/// for `localhost`, `127.0.0.1` and the simulator's address.
#[derive(Clone)]
pub struct VoiceTls {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for VoiceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceTls").finish_non_exhaustive()
    }
}

impl VoiceTls {
    /// A new CA and a server certificate for `host` (and the loopback names).
    pub fn generate(host: IpAddr) -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "Disco simulator voice CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !host.is_loopback() && !host.is_unspecified() {
            names.push(host.to_string());
        }
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// The CA certificate, PEM: what a client's `SSL_CERT_FILE` should hold.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA (`ca.pem`) and the server's certificate and key into `dir`, so another
    /// process can serve with the same identity ([`VoiceTls::load`]).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem)?;
        std::fs::write(dir.join("server.der"), &self.cert_der)?;
        std::fs::write(dir.join("server.key.der"), &self.key_der)
    }

    /// Reads what [`VoiceTls::save`] wrote.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            ca_pem: std::fs::read_to_string(dir.join("ca.pem"))?,
            cert_der: std::fs::read(dir.join("server.der"))?,
            key_der: std::fs::read(dir.join("server.key.der"))?,
        })
    }

    pub(super) fn acceptor(&self) -> std::io::Result<TlsAcceptor> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder.with_no_client_auth().with_single_cert(
                    vec![CertificateDer::from(self.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
                )
            })
            .map_err(std::io::Error::other)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
