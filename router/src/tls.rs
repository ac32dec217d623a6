//! TLS: the certificate the TLS listener serves, read again when its files
//! change on disk and on SIGHUP (a new handshake gets the new certificate,
//! open connections keep theirs), and the roots an `https://` upstream is
//! checked against.
//!
//! The backend is rustls (Pingora's `rustls` feature, with `ring`): it
//! builds from crates.io alone, with no system OpenSSL or BoringSSL build;
//! the reasons are in ARCHITECTURE.md.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::control::FileState;

/// Reads a PEM certificate chain and its private key, and checks that they
/// belong together. The error names the file and what is wrong with it.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = read_certificates(cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it: {e}",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, private, &rustls::crypto::ring::default_provider()).map_err(|e| {
        format!(
            "{} and {} do not go together: {e}",
            cert.display(),
            key.display()
        )
    })
}

/// Every certificate of a PEM file, in order; an error if there is none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(chain)
}

/// The certificate the TLS listener presents: swapped atomically when the
/// files change, so a reload never drops or stalls a connection.
#[derive(Debug)]
pub struct ServedCertificate {
    current: ArcSwap<CertifiedKey>,
    /// The files last read and what they looked like then.
    read: Mutex<Read>,
}

#[derive(Debug)]
struct Read {
    cert: PathBuf,
    key: PathBuf,
    seen: (FileState, FileState),
}

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The files did not change.
    Unchanged,
    /// The new certificate is served from the next handshake on.
    Swapped,
    /// The files changed but could not be used; the previous certificate
    /// stays. Why.
    Kept(String),
}

impl ServedCertificate {
    pub fn load(cert: &Path, key: &Path) -> Result<ServedCertificate, String> {
        let seen = (FileState::read(cert), FileState::read(key));
        let pair = load_pair(cert, key)?;
        Ok(ServedCertificate {
            current: ArcSwap::from_pointee(pair),
            read: Mutex::new(Read {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                seen,
            }),
        })
    }

    /// Reads `cert` and `key` again when they (or their paths) changed
    /// since the last read, or always when `force` (SIGHUP).
    pub fn refresh(&self, cert: &Path, key: &Path, force: bool) -> Refresh {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        // What the files look like before reading them: a write that lands
        // after the read shows as a change at the next look.
        let seen = (FileState::read(cert), FileState::read(key));
        if !force && read.cert == cert && read.key == key && read.seen == seen {
            return Refresh::Unchanged;
        }
        *read = Read {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            seen,
        };
        match load_pair(cert, key) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                Refresh::Swapped
            }
            Err(why) => Refresh::Kept(why),
        }
    }
}

/// TLS to one upstream, ready for each path that reaches it: Pingora's
/// connector (client requests), and a client for shadow copies and health
/// checks.
#[derive(Debug)]
pub struct TlsUpstream {
    /// What is sent as SNI and checked against the certificate.
    pub server_name: String,
    /// `host:port` as in the URL (IPv6 in brackets).
    pub authority: String,
    /// The roots of `ca_file` in Pingora's form; `None`: the system's roots.
    pub ca: Option<Arc<pingora_core::protocols::tls::CaType>>,
    /// Trusts the same roots; sends `server_name` to the resolved address.
    pub client: reqwest::Client,
}

impl TlsUpstream {
    /// Reads the upstream's CA file (when it names one) and builds its
    /// shadow client, connecting `server_name` to `addr`. On error the
    /// caller uses [`TlsUpstream::refusing`].
    pub fn new(
        tls: &strangler_config::UpstreamTls,
        authority: &str,
        addr: std::net::SocketAddr,
    ) -> Result<TlsUpstream, String> {
        let roots = tls.ca_file.as_deref().map(read_certificates).transpose()?;
        if let (Some(roots), Some(path)) = (&roots, &tls.ca_file) {
            // Pingora's parser panics on a malformed certificate: check first.
            let mut store = rustls::RootCertStore::empty();
            for der in roots {
                store
                    .add(der.clone())
                    .map_err(|e| format!("{}: not a CA certificate: {e}", path.display()))?;
            }
        }
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(usize::MAX)
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&tls.server_name, addr);
        if let Some(roots) = &roots {
            client = client.tls_built_in_root_certs(false);
            for der in roots {
                let cert = reqwest::Certificate::from_der(der)
                    .map_err(|e| format!("a certificate of the CA file: {e}"))?;
                client = client.add_root_certificate(cert);
            }
        }
        let client = client
            .build()
            .map_err(|e| format!("cannot build the TLS client: {e}"))?;
        let ca = roots.map(|roots| {
            let wrapped: Vec<pingora_core::utils::tls::WrappedX509> = roots
                .into_iter()
                .map(|der| {
                    pingora_core::utils::tls::WrappedX509::new(der.to_vec(), |raw| {
                        pingora_core::utils::tls::parse_x509(raw)
                    })
                })
                .collect();
            Arc::from(wrapped)
        });
        Ok(TlsUpstream {
            server_name: tls.server_name.clone(),
            authority: authority.to_string(),
            ca,
            client,
        })
    }
}

impl TlsUpstream {
    /// An upstream whose CA file could not be read: trusts nothing, so
    /// every connection to it fails (and falls back) rather than go out
    /// unchecked or in clear text.
    pub fn refusing(tls: &strangler_config::UpstreamTls, authority: &str) -> TlsUpstream {
        TlsUpstream {
            server_name: tls.server_name.clone(),
            authority: authority.to_string(),
            ca: Some(Arc::from(Vec::new())),
            client: reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .build()
                .unwrap_or_default(),
        }
    }
}

impl ResolvesServerCert for ServedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_mismatched_file_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let cert = dir.path().join("proxy.pem");
        let key = dir.path().join("proxy.key");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        std::fs::write(&key, "").expect("write");
        let e = load_pair(&cert, &key).expect_err("no certificate");
        assert!(e.contains("proxy.pem: no PEM certificate in it"), "{e}");
        let e = load_pair(&dir.path().join("absent.pem"), &key).expect_err("absent");
        assert!(e.contains("absent.pem"), "{e}");
    }
}
