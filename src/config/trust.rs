//! Extra trust anchors from `tls.ca_file`, loaded and checked when the
//! context is created so that a wrong path fails early and clearly.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The largest CA file read (a bundle of a few hundred certificates).
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a PEM file and returns its certificates; every one must be usable
/// as a trust anchor.
pub fn load_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{path} is not a file"));
    }
    if meta.len() > MAX_CA_FILE_BYTES {
        return Err(format!("{path} is larger than {MAX_CA_FILE_BYTES} bytes"));
    }
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        let cert = item.map_err(|e| format!("{path} is not valid PEM: {e}"))?;
        certs.push(cert.into_owned());
    }
    if certs.is_empty() {
        return Err(format!("{path} contains no PEM certificate"));
    }
    let mut roots = rustls::RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {} in {path} is not usable: {e}", i + 1))?;
    }
    Ok(certs)
}
