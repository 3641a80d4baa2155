//! TLS for the webhook listener: rustls with the ring provider, TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`, and
//! a certificate that follows its files.
//!
//! The certificate is served by a [`ReloadingCert`] resolver rather than baked into the `ServerConfig`: a poller
//! re-reads the certificate and key files every interval and swaps in the new pair when both parse and the key matches
//! the certificate. Reading through the paths (not watching inodes) sees Kubernetes Secret-volume updates, which swap a
//! `..data` symlink instead of writing the files. New handshakes get the new certificate; open connections keep
//! theirs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate pair could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// A PEM block could not be parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not match the certificate, or is of an unsupported type.
    #[error("{cert} and {key} are not a usable pair: {source}")]
    Pair {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
    /// The rustls configuration could not be built.
    #[error("cannot configure TLS: {0}")]
    Config(#[source] rustls::Error),
}

/// The process's crypto provider: ring.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server certificate that can be replaced while the server runs.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// `notAfter` of the served certificate, in seconds since the Unix epoch (0: unknown).
    not_after: AtomicI64,
    /// The bytes the current pair was built from, to notice changes cheaply.
    loaded: Mutex<(Vec<u8>, Vec<u8>)>,
}

impl ReloadingCert {
    /// Load the pair from its files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<ReloadingCert>, TlsError> {
        let provider = provider();
        let (cert_bytes, key_bytes) = read_pair(cert_path, key_path)?;
        let key = certified_key(cert_path, key_path, &cert_bytes, &key_bytes, &provider)?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            not_after: AtomicI64::new(not_after(&key).unwrap_or(0)),
            current: ArcSwap::from_pointee(key),
            loaded: Mutex::new((cert_bytes, key_bytes)),
        }))
    }

    /// Re-read the files; swap in the new pair if they changed and are valid. Returns whether the certificate changed.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_bytes, key_bytes) = read_pair(&self.cert_path, &self.key_path)?;
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if loaded.0 == cert_bytes && loaded.1 == key_bytes {
            return Ok(false);
        }
        let key = certified_key(
            &self.cert_path,
            &self.key_path,
            &cert_bytes,
            &key_bytes,
            &self.provider,
        )?;
        self.not_after
            .store(not_after(&key).unwrap_or(0), Ordering::Relaxed);
        self.current.store(Arc::new(key));
        *loaded = (cert_bytes, key_bytes);
        Ok(true)
    }

    /// The rustls server configuration serving this certificate: TLS 1.3 and 1.2, ALPN h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// When the served certificate expires (its `notAfter`), in seconds since the Unix epoch; `None` if its
    /// validity could not be read.
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(Ordering::Relaxed)).filter(|t| *t != 0)
    }

    /// Poll the files every `interval` until the task is dropped, logging each reload or failure.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        self.watch_with(interval, |_| {}).await;
    }

    /// [`ReloadingCert::watch`], calling `on_reload` after each certificate swap (e.g. to update metrics).
    pub async fn watch_with(
        self: Arc<Self>,
        interval: Duration,
        on_reload: impl Fn(&ReloadingCert) + Send,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let this = self.clone();
            let result = tokio::task::spawn_blocking(move || this.reload()).await;
            match result {
                Ok(Ok(true)) => {
                    tracing::info!(
                        cert = %self.cert_path.display(),
                        not_after = self.not_after().unwrap_or_default(),
                        "reloaded the TLS certificate"
                    );
                    on_reload(&self);
                }
                Ok(Ok(false)) => {}
                Ok(Err(err)) => tracing::warn!(error = %err, "keeping the current TLS certificate"),
                Err(err) => tracing::warn!(error = %err, "TLS certificate reload task failed"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

/// `notAfter` of the leaf certificate, in seconds since the Unix epoch.
fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

fn certified_key(
    cert_path: &Path,
    key_path: &Path,
    cert_bytes: &[u8],
    key_bytes: &[u8],
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_path_buf(),
            message: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_path.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|e| TlsError::Pem {
        path: key_path.to_path_buf(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Pair {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let generated = certs::generate(
            &[name.into()],
            &[],
            Duration::from_secs(600),
            Duration::from_secs(600),
        )
        .expect("generates");
        let out = dir.join(name);
        let written = certs::write(&out, &generated).expect("writes");
        (written.cert, written.key)
    }

    #[test]
    fn reload_swaps_only_valid_changed_pairs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = pair(dir.path(), "one");
        let reloading = ReloadingCert::load(&cert, &key).expect("loads");
        let first = reloading.current.load_full();
        assert!(!reloading.reload().expect("unchanged"));

        // A mismatched pair (new cert, old key) is refused and the old pair stays.
        let (cert2, key2) = pair(dir.path(), "two");
        std::fs::copy(&cert2, &cert).expect("copy");
        assert!(matches!(reloading.reload(), Err(TlsError::Pair { .. })));
        assert!(Arc::ptr_eq(&first, &reloading.current.load_full()));

        // The matching key arrives: the pair is swapped.
        std::fs::copy(&key2, &key).expect("copy");
        assert!(reloading.reload().expect("reloads"));
        assert!(!Arc::ptr_eq(&first, &reloading.current.load_full()));
    }

    #[test]
    fn expiry_follows_the_served_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let short = certs::generate(
            &["a".into()],
            &[],
            Duration::from_secs(3600),
            Duration::from_secs(7200),
        )
        .expect("generates");
        let long = certs::generate(
            &["a".into()],
            &[],
            Duration::from_secs(86400),
            Duration::from_secs(172800),
        )
        .expect("generates");
        let written = certs::write(&dir.path().join("c"), &short).expect("writes");
        let reloading = ReloadingCert::load(&written.cert, &written.key).expect("loads");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let first = reloading.not_after().expect("known expiry");
        assert!(
            (now + 3000..=now + 3700).contains(&first),
            "notAfter {first} is about an hour from {now}"
        );

        certs::write(&dir.path().join("c"), &long).expect("writes");
        assert!(reloading.reload().expect("reloads"));
        let second = reloading.not_after().expect("known expiry");
        assert!(
            (now + 86000..=now + 86500).contains(&second),
            "notAfter {second} is about a day from {now}"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("tls.crt");
        let key = dir.path().join("tls.key");
        std::fs::write(&cert, "not pem").expect("write");
        std::fs::write(&key, "not pem").expect("write");
        let err = ReloadingCert::load(&cert, &key).expect_err("garbage");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let missing = ReloadingCert::load(&dir.path().join("nope.crt"), &key).expect_err("missing");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }
}
