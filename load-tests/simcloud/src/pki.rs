//! A test CA made at start, and one wildcard certificate for the region it issues.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The CA's PEM (for clients) and a TLS acceptor serving the wildcard certificate.
pub struct Pki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// Server side TLS for `*.DOMAIN`.
    pub acceptor: TlsAcceptor,
}

/// Loads the CA and server certificate saved in `dir` by an earlier run, or makes new ones
/// and saves them, so that a restarted cloud keeps the certificate clients already trust.
pub fn load_or_make(
    dir: &std::path::Path,
    domain: &str,
) -> Result<Pki, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    let (ca_path, chain_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    if ca_path.exists() && chain_path.exists() && key_path.exists() {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&chain_path)?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(&key_path)?;
        return Ok(Pki {
            ca_pem: std::fs::read_to_string(&ca_path)?,
            acceptor: acceptor(chain, key)?,
        });
    }
    let (pki, chain_pem, key_pem) = make(domain)?;
    std::fs::write(&chain_path, chain_pem)?;
    std::fs::write(&key_path, key_pem)?;
    std::fs::write(&ca_path, &pki.ca_pem)?;
    Ok(pki)
}

fn acceptor(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, Box<dyn std::error::Error>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Creates a CA and a certificate for `*.{domain}`; also returns the chain and key PEMs.
fn make(domain: &str) -> Result<(Pki, String, String), Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "simcloud test CA");
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut leaf_params = CertificateParams::new(vec![format!("*.{domain}")])?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, format!("*.{domain}"));
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key)?;

    let chain = vec![
        CertificateDer::from(leaf.der().to_vec()),
        CertificateDer::from(ca.der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let pki = Pki {
        ca_pem: ca.pem(),
        acceptor: acceptor(chain, key)?,
    };
    Ok((
        pki,
        format!("{}{}", leaf.pem(), ca.pem()),
        leaf_key.serialize_pem(),
    ))
}

/// A TLS client that trusts only the CA certificate in the PEM file at `ca`.
pub fn connector(
    ca: &std::path::Path,
) -> Result<tokio_rustls::TlsConnector, Box<dyn std::error::Error>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca)?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
