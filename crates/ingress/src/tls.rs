//! Native TLS for the public port (rustls with the `ring` provider), for installs without an
//! ingress controller, with certificate reload: the certificate and key files are polled and a
//! changed pair is swapped in for new connections without a restart. A pair that does not load
//! (half-written files, a key that does not match) is logged and counted, and the current
//! certificate stays in use, so a botched renewal never takes the endpoint down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate/key pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("no PEM certificate found in the certificate file")]
    NoCertificate,
    /// The certificate PEM is malformed.
    #[error("malformed certificate PEM: {0}")]
    CertificatePem(String),
    /// The key file holds no usable PEM private key.
    #[error("no PEM private key (PKCS#8, PKCS#1 or SEC1) found in the key file: {0}")]
    Key(String),
    /// rustls refused the pair (unsupported key type, key not matching the certificate).
    #[error("the certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds a certified key from PEM bytes: the certificate chain (leaf first) and its private key,
/// checking that the key belongs to the leaf certificate.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::CertificatePem(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(CertifiedKey::from_der(chain, key, &provider())?)
}

/// Serves whichever certificate was loaded last; shared by every connection's handshake.
#[derive(Debug)]
pub struct ReloadingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Starts with this certificate.
    pub fn new(key: CertifiedKey) -> Self {
        Self { current: RwLock::new(Arc::new(key)) }
    }

    /// Replaces the certificate for connections that start from now on.
    pub fn replace(&self, key: CertifiedKey) {
        match self.current.write() {
            Ok(mut guard) => *guard = Arc::new(key),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(key),
        }
    }

    /// The certificate new connections get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A certificate/key file pair and what was last read from them.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    /// The bytes last seen (loaded or rejected), so an unchanged or already-rejected pair is not
    /// reloaded or logged again on every poll.
    seen: (Vec<u8>, Vec<u8>),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

impl CertFiles {
    /// Loads the pair for the first time; an error here stops the process from starting.
    pub fn load(cert: &Path, key: &Path) -> Result<(Self, CertifiedKey), TlsError> {
        let (c, k) = (read(cert)?, read(key)?);
        let certified = certified_key(&c, &k)?;
        Ok((Self { cert: cert.to_path_buf(), key: key.to_path_buf(), seen: (c, k) }, certified))
    }

    /// Reads the files again: `Ok(Some(_))` when they changed and load, `Ok(None)` when nothing
    /// changed, `Err` when they changed and do not load (reported once per change).
    pub fn poll(&mut self) -> Result<Option<CertifiedKey>, TlsError> {
        let now = (read(&self.cert)?, read(&self.key)?);
        if now == self.seen {
            return Ok(None);
        }
        let result = certified_key(&now.0, &now.1);
        self.seen = now;
        result.map(Some)
    }
}

/// A rustls server configuration (TLS 1.2 and 1.3, `ring`, no client certificates) that asks
/// `cert` for the certificate of every new connection.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert))
}

/// Polls `files` every `interval` and swaps changed, valid certificates into `cert` until
/// `stop` resolves.
pub async fn watch(
    mut files: CertFiles,
    cert: Arc<ReloadingCert>,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let metrics = roster_telemetry::metrics();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match files.poll() {
            Ok(None) => {}
            Ok(Some(key)) => {
                cert.replace(key);
                metrics.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert = %files.cert.display(), "loaded the changed TLS certificate");
            }
            Err(e) => {
                metrics.tls_reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, cert = %files.cert.display(), key = %files.key.display(),
                    "the changed TLS certificate files do not load; still serving the previous certificate");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test fails by panicking, with the reason
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("rcgen generates a certificate");
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn leaf(k: &CertifiedKey) -> Vec<u8> {
        k.cert.first().map(|c| c.as_ref().to_vec()).unwrap_or_default()
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let (cert, key) = self_signed("a.example");
        assert!(certified_key(cert.as_bytes(), key.as_bytes()).is_ok());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (cert, _) = self_signed("a.example");
        let (_, other_key) = self_signed("b.example");
        assert!(matches!(certified_key(cert.as_bytes(), other_key.as_bytes()), Err(TlsError::Rustls(_))));
    }

    #[test]
    fn files_without_pem_are_refused() {
        let (cert, key) = self_signed("a.example");
        assert!(matches!(certified_key(b"", key.as_bytes()), Err(TlsError::NoCertificate)));
        assert!(matches!(certified_key(cert.as_bytes(), b"not a key"), Err(TlsError::Key(_))));
    }

    #[test]
    fn poll_reports_changes_once_and_keeps_quiet_otherwise() {
        let dir = std::env::temp_dir().join(format!("roster-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        let (c1, k1) = self_signed("one.example");
        std::fs::write(&cert_path, &c1).expect("write cert");
        std::fs::write(&key_path, &k1).expect("write key");
        let (mut files, first) = CertFiles::load(&cert_path, &key_path).expect("initial pair loads");
        assert!(matches!(files.poll(), Ok(None)), "unchanged files are not reloaded");

        // A half-finished renewal: the new certificate with the old key.
        let (c2, k2) = self_signed("two.example");
        std::fs::write(&cert_path, &c2).expect("write cert");
        assert!(files.poll().is_err(), "a mismatched pair is reported");
        assert!(matches!(files.poll(), Ok(None)), "and reported only once");

        std::fs::write(&key_path, &k2).expect("write key");
        let second = files.poll().ok().flatten().expect("the completed pair loads");
        assert_ne!(leaf(&first), leaf(&second));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_resolver_serves_the_latest_certificate() {
        let (c1, k1) = self_signed("one.example");
        let (c2, k2) = self_signed("two.example");
        let first = certified_key(c1.as_bytes(), k1.as_bytes()).expect("loads");
        let second = certified_key(c2.as_bytes(), k2.as_bytes()).expect("loads");
        let (l1, l2) = (leaf(&first), leaf(&second));
        let r = ReloadingCert::new(first);
        assert_eq!(leaf(&r.current()), l1);
        r.replace(second);
        assert_eq!(leaf(&r.current()), l2);
    }
}
