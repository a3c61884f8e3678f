//! The one TLS client configuration of the library, for the identity
//! provider and the mail servers alike: rustls with the ring provider, the
//! operating system's verifier (on Windows CryptoAPI chain building, so
//! enterprise roots and TLS-inspecting proxies work) plus the PEM trust
//! anchors of `tls.ca_file`.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

pub fn client_config(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
        extra_roots.iter().cloned(),
        provider.clone(),
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::Tls,
            Text::new(
                format!("the system's certificate store could not be used: {e}"),
                format!("der Zertifikatspeicher des Systems ist nicht nutzbar: {e}"),
            ),
        )
    })?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}
