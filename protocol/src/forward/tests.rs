use super::seal::{forward_cipher, seal_with};
use super::*;
use crate::DecodeError;
use crate::Error;
use crate::codec::domain_separated;
use crate::command::Request;
use crate::delivery::DhKeyPair;
use crate::envelope::{BodySize, Envelope};
use crate::envelope::{CoarseTime, MailboxId, MessageId};
use crate::keys::{SigningKeyPair, labels};
use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use sha2::Sha256;

#[test]
fn forward_ids_are_stable_and_keyed() {
    let m = MessageId([7; 16]);
    let a = forward_id_for(&[1; 32], &m);
    assert_eq!(a, forward_id_for(&[1; 32], &m), "a retry finds its forward");
    assert_ne!(
        a,
        forward_id_for(&[2; 32], &m),
        "keyed by the client's secret"
    );
    assert_ne!(a, forward_id_for(&[1; 32], &MessageId([8; 16])));
    // Whoever sees the message id (the destination) cannot compute the
    // id without the client's secret: not the unkeyed hash of it.
    let unkeyed = {
        use sha2::Digest;
        Sha256::digest(domain_separated(labels::FORWARD_ID, &[&m.0]))
    };
    assert_ne!(&a.0[..], &unkeyed[..16]);
}
use crate::limits::{BODY_LARGE, BODY_SMALL};

fn relay(seed: u8) -> (SigningKeyPair, ForwardKey) {
    let id = SigningKeyPair::from_secret_bytes(&[seed; 32]);
    let fk = ForwardKey::new(
        DhKeyPair::from_secret_bytes([seed.wrapping_add(100); 32]),
        id.public().relay_fingerprint(),
    );
    (id, fk)
}

fn env(len: usize) -> Envelope {
    Envelope::sign(
        &SigningKeyPair::from_secret_bytes(&[3; 32]),
        MailboxId([4; 16]),
        MessageId([5; 16]),
        CoarseTime(6),
        &vec![7; len],
    )
    .unwrap()
}

#[test]
fn relay_key_verifies_only_for_its_fingerprint_and_before_expiry() {
    let (id, fk) = relay(1);
    let (other, _) = relay(2);
    let bundle = RelayKey::sign(&id, *fk.public(), 1000);
    let bytes = {
        let mut v = Vec::new();
        bundle.encode(&mut v);
        v
    };
    assert_eq!(bytes.len(), RELAY_KEY_LEN);
    let decoded = RelayKey::decode(&bytes).unwrap();
    let fp = id.public().relay_fingerprint();
    assert_eq!(decoded.verify(&fp, 999), Ok(*fk.public()));
    assert_eq!(decoded.verify(&fp, 1000), Err(Error::VerificationFailed));
    assert_eq!(
        decoded.verify(&other.public().relay_fingerprint(), 1),
        Err(Error::VerificationFailed)
    );
    // Another key under the old signature, or a bundle signed by another
    // relay presented for this one.
    let forged = decoded.with_forward_dh_unsigned([9; 32]);
    assert_eq!(forged.verify(&fp, 1), Err(Error::VerificationFailed));
    let theirs = RelayKey::sign(&other, [9; 32], 1000);
    assert_eq!(theirs.verify(&fp, 1), Err(Error::VerificationFailed));
    // A signature under another label does not verify.
    let wrong_label = RelayKey {
        signature: other.sign_parts(
            labels::ENVELOPE,
            &[other.public().as_bytes(), &[9; 32], &1000u64.to_be_bytes()],
        ),
        ..theirs.clone()
    };
    assert_eq!(
        wrong_label.verify(&other.public().relay_fingerprint(), 1),
        Err(Error::VerificationFailed)
    );
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(RelayKey::decode(&long), Err(DecodeError::TrailingBytes(1)));
    assert_eq!(RelayKey::decode(&bytes[..100]), Err(DecodeError::Truncated));
}

#[test]
fn sealed_send_opens_only_at_the_destination() {
    let mut rng = rand::rng();
    let (id, fk) = relay(1);
    let (_, other_fk) = relay(2);
    let fp = id.public().relay_fingerprint();
    for len in [BODY_SMALL, BODY_LARGE] {
        let e = env(len);
        let sealed = seal_send(&mut rng, &fp, fk.public(), &e).unwrap();
        assert_eq!(sealed.len(), sealed_len(BodySize::fitting(len).unwrap()));
        if len == BODY_SMALL {
            // (Quadratic: checked on the small envelope only.)
            assert!(
                !sealed
                    .windows(64)
                    .any(|w| e.as_bytes().windows(64).any(|v| v == w))
            );
        }
        assert_eq!(fk.open(&sealed).unwrap(), e);
        // Another relay's key.
        assert_eq!(other_fk.open(&sealed), Err(Error::VerificationFailed));
        // Tampered anywhere.
        for i in [0, 40, 60, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(fk.open(&bad).is_err(), "flip at {i}");
        }
        // Truncated or padded.
        assert!(fk.open(&sealed[..sealed.len() - 1]).is_err());
    }
    // Sealed for the right key but another destination fingerprint.
    let e = env(BODY_SMALL);
    let (id2, _) = relay(2);
    let sealed = seal_send(&mut rng, &id2.public().relay_fingerprint(), fk.public(), &e).unwrap();
    assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
}

#[test]
fn wrong_label_does_not_open() {
    let (id, fk) = relay(1);
    let fp = id.public().relay_fingerprint();
    let eph = DhKeyPair::from_secret_bytes([42; 32]);
    let e = env(BODY_SMALL);
    // The same construction with the delivery label as AAD.
    let shared = eph.agree(fk.public()).unwrap();
    let cipher = forward_cipher(&shared, eph.public(), fk.public(), &fp).unwrap();
    let aad = domain_separated(labels::DELIVERY_AAD, &[&fp.0]);
    let ct = cipher
        .encrypt(
            &XNonce::from([1; 24]),
            Payload {
                msg: &Request::Send(e.clone()).to_bytes(),
                aad: &aad,
            },
        )
        .unwrap();
    let mut sealed = eph.public().to_vec();
    sealed.extend_from_slice(&[1; 24]);
    sealed.extend_from_slice(&ct);
    assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
    // And the right label opens.
    let good = seal_with(&eph, [1; 24], &fp, fk.public(), &e).unwrap();
    assert_eq!(fk.open(&good).unwrap(), e);
}

#[test]
fn low_order_keys_refused() {
    let mut rng = rand::rng();
    let (id, fk) = relay(1);
    let fp = id.public().relay_fingerprint();
    assert_eq!(
        seal_send(&mut rng, &fp, &[0; 32], &env(BODY_SMALL)),
        Err(Error::WeakKey)
    );
    let mut sealed = vec![0u8; sealed_len(BodySize::Small)];
    sealed[40] = 1;
    assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
}
