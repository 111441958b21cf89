//! TLS for the webhook listener: rustls with the certificate chain and key from PEM files,
//! ALPN offering HTTP/2 (when enabled) and HTTP/1.1. A reload swaps the config; new
//! connections use the new certificate, open ones keep theirs.

use std::io::BufReader;
use std::sync::Arc;

use crate::config::TlsConfig;

/// Builds the rustls server config, or says what is wrong with the files.
pub fn load(cfg: &TlsConfig, http2: bool) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |path: &std::path::Path| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut read(&cfg.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "`{}` is not a PEM certificate chain: {e}",
                cfg.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no certificate", cfg.cert.display()));
    }
    let key = rustls_pemfile::private_key(&mut read(&cfg.key)?)
        .map_err(|e| format!("`{}` is not a PEM private key: {e}", cfg.key.display()))?
        .ok_or_else(|| format!("`{}` holds no private key", cfg.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not belong together: {e}"))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}
