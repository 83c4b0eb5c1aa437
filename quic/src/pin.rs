//! Key pinning: a relay is the holder of the ed25519 key whose fingerprint
//! its address names.
//!
//! The certificate is only a carrier for that key. The verifier accepts it
//! when the key's relay fingerprint equals the pin (compared in constant
//! time) and the TLS 1.3 handshake is signed with it, which proves
//! possession: an impostor presenting the real certificate with another key
//! fails the second check.

use enlace_protocol::keys::{Fingerprint, PublicKey};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use subtle::ConstantTimeEq;

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410).
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The ed25519 key in a certificate, if that is what it holds.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX)?;
    PublicKey::from_bytes(key.try_into().ok()?).ok()
}

/// Verifies a relay by its pinned key fingerprint (no CA, no names) and
/// the TLS 1.3 handshake signature made with that key.
#[derive(Debug)]
pub struct PinnedRelayVerifier {
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedRelayVerifier {
    /// A verifier for relays whose key has fingerprint `pinned`, checking
    /// handshake signatures with `provider`'s algorithms.
    pub fn new(pinned: Fingerprint, provider: &CryptoProvider) -> Self {
        Self {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = certificate_key(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if bool::from(key.relay_fingerprint().0.ct_eq(&self.pinned.0)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Without this an impostor holding the real certificate but another
        // key would pass: the pin names the key, this proves possession.
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use enlace_protocol::keys::SigningKeyPair;
    use rustls::pki_types::PrivatePkcs8KeyDer;

    use super::*;

    fn ed25519_cert(key: &SigningKeyPair) -> CertificateDer<'static> {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&*key.secret_bytes());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        let params = rcgen::CertificateParams::new(vec!["enlace-relay".to_owned()]).unwrap();
        params.self_signed(&pair).unwrap().der().clone()
    }

    fn verify(verifier: &PinnedRelayVerifier, cert: &CertificateDer<'_>) -> bool {
        verifier
            .verify_server_cert(
                cert,
                &[],
                &ServerName::try_from("enlace-relay").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn pins_the_key_fingerprint() {
        let provider = rustls::crypto::ring::default_provider();
        let relay = SigningKeyPair::generate(&mut rand::rng());
        let cert = ed25519_cert(&relay);
        assert_eq!(certificate_key(&cert), Some(*relay.public()));
        let right = PinnedRelayVerifier::new(relay.public().relay_fingerprint(), &provider);
        assert!(verify(&right, &cert));
        // The identity fingerprint of the same key is a different pin.
        let wrong_role = PinnedRelayVerifier::new(relay.public().identity_fingerprint(), &provider);
        assert!(!verify(&wrong_role, &cert));
        let other = SigningKeyPair::generate(&mut rand::rng());
        let wrong = PinnedRelayVerifier::new(other.public().relay_fingerprint(), &provider);
        assert!(!verify(&wrong, &cert));
        assert_eq!(
            right.supported_verify_schemes(),
            vec![rustls::SignatureScheme::ED25519]
        );
    }

    #[test]
    fn refuses_non_ed25519_and_unparsable_certificates() {
        let provider = rustls::crypto::ring::default_provider();
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["enlace-relay".to_owned()]).unwrap();
        let cert = params.self_signed(&p256).unwrap().der().clone();
        assert_eq!(certificate_key(&cert), None);
        let any = SigningKeyPair::generate(&mut rand::rng());
        let verifier = PinnedRelayVerifier::new(any.public().relay_fingerprint(), &provider);
        assert!(!verify(&verifier, &cert));
        assert!(!verify(&verifier, &CertificateDer::from(vec![0x30, 0x00])));
    }
}
