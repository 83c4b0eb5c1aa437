//! Envelope decoding and verification: never panics, decode -> encode is the
//! identity, and only an envelope signed by the key verifies.
#![no_main]

use enlace_protocol::envelope::Envelope;
use enlace_protocol::keys::SigningKeyPair;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKeyPair::from_secret_bytes(&[7; 32]);
    if let Ok(env) = Envelope::decode(data) {
        assert_eq!(env.as_bytes(), data);
        // Random bytes never carry a valid signature by this key unless the
        // fuzzer found a forgery; re-signing the same fields must verify.
        if env.verify(key.public()).is_ok() {
            let again = Envelope::sign(&key, env.send_id(), env.message_id(), env.timestamp(), env.body())
                .expect("decoded body has a valid size");
            assert_eq!(again.as_bytes(), data, "verified envelope differs from its deterministic signature");
        }
        let resigned = Envelope::sign(&key, env.send_id(), env.message_id(), env.timestamp(), env.body())
            .expect("decoded body has a valid size");
        assert!(resigned.verify(key.public()).is_ok());
        let decoded = Envelope::decode(resigned.as_bytes()).expect("signed envelope decodes");
        assert_eq!(decoded, resigned);
    }
});
