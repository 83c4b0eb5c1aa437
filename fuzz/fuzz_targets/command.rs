//! Request and response decoding: never panics, and decode -> encode is the
//! identity (recipient commands keep the exact bytes they were signed over).
#![no_main]

use enlace_protocol::command::{ConnectionBinding, RelayError, Request, Response};
use enlace_protocol::delivery::DhKeyPair;
use enlace_protocol::forward::ForwardKey;
use enlace_protocol::keys::SigningKeyPair;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::decode(data) {
        assert_eq!(req.to_bytes(), data);
        // A random signature must not verify under an unrelated key.
        let key = SigningKeyPair::from_secret_bytes(&[9; 32]);
        let binding = ConnectionBinding([1; 32]);
        let forged = match &req {
            Request::Secure(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Subscribe(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Ack(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Delete(s) => s.verify(&binding, key.public()).is_ok(),
            _ => false,
        };
        assert!(!forged, "fuzzer forged a recipient signature");
        // Sealed forwards are bounded to the fixed lengths and never open
        // without the key they were sealed to.
        if let Request::RelayDeliver { sealed } = &req {
            let fk = ForwardKey::new(
                DhKeyPair::from_secret_bytes([7; 32]),
                key.public().relay_fingerprint(),
            );
            assert!(enlace_protocol::forward::is_sealed_len(sealed.len()));
            assert!(fk.open(sealed).is_err(), "fuzzer forged a sealed forward");
        }
    }
    if let Ok(resp) = Response::decode(data) {
        // Unknown error codes from newer relays drop their details.
        if !matches!(resp, Response::Error(RelayError::Other(_))) {
            assert_eq!(resp.to_bytes(), data);
        }
    }
});
