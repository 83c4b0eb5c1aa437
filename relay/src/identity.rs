//! The relay's long-term identity: an ed25519 key in the data directory and
//! the self-signed certificate made from it.
//!
//! The key is created once (file mode 0600) and never replaced silently: a
//! certificate without its key, a corrupt key, or a certificate for another
//! key stops the relay with an error instead of minting a new identity that
//! every client would refuse. The address fingerprint is
//! [`enlace_protocol::keys::PublicKey::relay_fingerprint`] of this key, and the TLS handshake is
//! signed with it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use enlace_protocol::delivery::DhKeyPair;
use enlace_protocol::forward::ForwardKey;
use enlace_protocol::keys::{Fingerprint, SigningKeyPair};
use enlace_quic::pin::certificate_key;
use pkcs8::pkcs8_v1;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

/// File name of the key (the 32-byte ed25519 seed).
pub const KEY_FILE: &str = "relay.key";
/// File name of the certificate (DER).
pub const CERT_FILE: &str = "relay.crt";
/// File name of the forwarding key (the 32-byte X25519 secret other
/// relays' clients seal forwarded sends to; see `enlace_protocol::forward`).
pub const FORWARD_KEY_FILE: &str = "forward.key";

/// Why the identity could not be loaded or made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The certificate exists but its key does not.
    #[error(
        "{cert} exists but {key} is missing: refusing to create a new identity (clients pin the old one); restore the key, or remove both files to start a new relay identity"
    )]
    KeyMissing {
        /// Certificate path.
        cert: PathBuf,
        /// Key path.
        key: PathBuf,
    },
    /// The key file is not a key.
    #[error("{0} is not a 32-byte relay key: restore it from a backup")]
    KeyCorrupt(PathBuf),
    /// Other users may read the key.
    #[error("{0} is readable by other users: run `chmod 600` on it")]
    KeyPermissions(PathBuf),
    /// The certificate does not belong to the key.
    #[error(
        "{0} does not match the relay key: remove it and the relay makes a new one from the key"
    )]
    CertMismatch(PathBuf),
    /// Certificate generation failed.
    #[error("could not make the certificate: {0}")]
    Cert(#[source] rcgen::Error),
}

/// The loaded identity.
pub struct Identity {
    key: SigningKeyPair,
    cert: CertificateDer<'static>,
    forward: ForwardKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Identity {
    /// Loads the identity from `dir`, creating key and certificate on first
    /// start.
    pub fn load_or_create(dir: &Path) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key = match fs::metadata(&key_path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(IdentityError::KeyPermissions(key_path));
                }
                let bytes = fs::read(&key_path).map_err(io(&key_path))?;
                let seed: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| IdentityError::KeyCorrupt(key_path.clone()))?;
                SigningKeyPair::from_secret_bytes(&seed)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if cert_path.exists() {
                    return Err(IdentityError::KeyMissing {
                        cert: cert_path,
                        key: key_path,
                    });
                }
                let key = SigningKeyPair::generate(&mut rand::rng());
                write_private(dir, &key_path, key.secret_bytes().as_slice())?;
                tracing::info!("created a new relay key");
                key
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let cert = match fs::read(&cert_path) {
            Ok(der) => {
                let cert = CertificateDer::from(der);
                if certificate_key(&cert) != Some(*key.public()) {
                    return Err(IdentityError::CertMismatch(cert_path));
                }
                cert
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cert = make_cert(&key)?;
                write_private(dir, &cert_path, &cert)?;
                cert
            }
            Err(e) => return Err(io(&cert_path)(e)),
        };
        let forward = ForwardKey::new(
            load_or_create_forward_key(dir)?,
            key.public().relay_fingerprint(),
        );
        Ok(Self { key, cert, forward })
    }

    /// Loads an existing identity without creating anything.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let key_path = dir.join(KEY_FILE);
        if !key_path.exists() {
            return Err(io(&key_path)(std::io::ErrorKind::NotFound.into()));
        }
        Self::load_or_create(dir)
    }

    /// The fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.key.public().relay_fingerprint()
    }

    /// The relay's key pair.
    pub fn key(&self) -> &SigningKeyPair {
        &self.key
    }

    /// The forwarding key.
    pub fn forward_key(&self) -> &ForwardKey {
        &self.forward
    }

    /// The certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The private key in PKCS#8 for rustls.
    pub fn pkcs8(&self) -> PrivatePkcs8KeyDer<'static> {
        PrivatePkcs8KeyDer::from(pkcs8_v1(&self.key.secret_bytes()))
    }
}

/// The forwarding key: made once beside the relay key, 0600, never replaced
/// silently (clients may hold a signed bundle for it).
fn load_or_create_forward_key(dir: &Path) -> Result<DhKeyPair, IdentityError> {
    let path = dir.join(FORWARD_KEY_FILE);
    match fs::metadata(&path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(IdentityError::KeyPermissions(path));
            }
            let bytes = Zeroizing::new(fs::read(&path).map_err(io(&path))?);
            let secret: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::KeyCorrupt(path.clone()))?;
            Ok(DhKeyPair::from_secret_bytes(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = DhKeyPair::generate(&mut rand::rng());
            write_private(dir, &path, pair.secret_bytes().as_slice())?;
            Ok(pair)
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// Writes a file readable by the owner only, durably (temp file, fsync,
/// rename, fsync of the directory).
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(())
}

fn make_cert(key: &SigningKeyPair) -> Result<CertificateDer<'static>, IdentityError> {
    let der = pkcs8_v1(&key.secret_bytes());
    let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(der.as_slice()),
        &rcgen::PKCS_ED25519,
    )
    .map_err(IdentityError::Cert)?;
    // The name is not checked by clients (they pin the key); it is fixed so
    // that certificates say nothing about the relay's host.
    let params = rcgen::CertificateParams::new(vec!["enlace-relay".to_owned()])
        .map_err(IdentityError::Cert)?;
    let cert = params.self_signed(&pair).map_err(IdentityError::Cert)?;
    Ok(cert.der().clone())
}

mod pkcs8 {
    /// PKCS#8 v1 (RFC 8410) DER for an ed25519 seed.
    pub(super) fn pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&PREFIX);
        der.extend_from_slice(seed);
        der
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(certificate_key(a.cert()), Some(*a.key().public()));
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.cert(), b.cert());
    }

    #[test]
    fn refuses_cert_without_key_and_corrupt_key() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        fs::write(&key, b"short").unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::KeyCorrupt(_))
        ));
        fs::remove_file(&key).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::KeyMissing { .. })
        ));
        assert!(!key.exists());
    }

    #[test]
    fn refuses_a_key_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        let key = dir.path().join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::KeyPermissions(_))
        ));
    }

    #[test]
    fn refuses_a_cert_for_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        Identity::load_or_create(dir.path()).unwrap();
        Identity::load_or_create(other.path()).unwrap();
        fs::copy(other.path().join(CERT_FILE), dir.path().join(CERT_FILE)).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path()),
            Err(IdentityError::CertMismatch(_))
        ));
    }
}
