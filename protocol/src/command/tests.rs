use super::*;
use crate::address::RelayAddress;
use crate::delivery::{SEAL_NONCE_LEN, SEAL_TAG_LEN};
use crate::envelope::CoarseTime;
use crate::envelope::{Envelope, MailboxId, MessageId};
use crate::forward::RelayKey;
use crate::keys::{PublicKey, SigningKeyPair};
use crate::limits::BODY_SMALL;
use crate::limits::ENVELOPE_OVERHEAD;
use crate::{DecodeError, Error};

fn key(seed: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&[seed; 32])
}

fn all_requests(binding: &ConnectionBinding) -> Vec<Request> {
    let k = key(1);
    let rid = MailboxId([2; 16]);
    let env = Envelope::sign(
        &key(4),
        MailboxId([3; 16]),
        MessageId([5; 16]),
        CoarseTime(7),
        &[0; BODY_SMALL],
    )
    .unwrap();
    vec![
        Request::hello(),
        Request::create_mailbox(&k, [9; 32], binding),
        Request::secure(rid, *key(4).public(), &k, binding),
        Request::Send(env),
        Request::subscribe(rid, &k, binding),
        Request::ack(rid, MessageId([5; 16]), &k, binding),
        Request::delete(rid, &k, binding),
        Request::FetchRelayKey {
            destination: RelayAddress::new(
                crate::keys::Fingerprint([0xaa; 32]),
                "relay.example",
                4433,
            )
            .unwrap(),
        },
        Request::Forward(Forward {
            destination: RelayAddress::new(crate::keys::Fingerprint([0xbb; 32]), "127.0.0.1", 9)
                .unwrap(),
            forward_id: ForwardId([6; 16]),
            sealed: vec![1; crate::forward::sealed_len(crate::envelope::BodySize::Small)],
        }),
        Request::RelayDeliver {
            // The smallest class: a cut can never land on a valid length.
            sealed: vec![2; crate::forward::sealed_len(crate::envelope::BodySize::Small)],
        },
        Request::ForwardStatus {
            ids: vec![ForwardId([1; 16]), ForwardId([2; 16])],
        },
    ]
}

#[test]
fn requests_round_trip_and_reject_truncation_and_trailing() {
    let binding = ConnectionBinding([7; 32]);
    for req in all_requests(&binding) {
        let bytes = req.to_bytes();
        assert_eq!(Request::decode(&bytes).unwrap(), req);
        for cut in 0..bytes.len() {
            assert!(
                Request::decode(&bytes[..cut]).is_err(),
                "{req:?} cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        let expected = match req {
            // The sealed part runs to the end: one more byte is a
            // length no size class has.
            Request::Forward(_) | Request::RelayDeliver { .. } => {
                DecodeError::InvalidField("sealed forward length")
            }
            _ => DecodeError::TrailingBytes(1),
        };
        assert_eq!(Request::decode(&long), Err(expected));
    }
}

#[test]
fn signed_commands_are_bound_to_the_connection() {
    let binding = ConnectionBinding([7; 32]);
    let other = ConnectionBinding([8; 32]);
    let k = key(1);
    for req in all_requests(&binding) {
        let decoded = Request::decode(&req.to_bytes()).unwrap();
        let check = |b: &ConnectionBinding, pk: &PublicKey| match &decoded {
            Request::CreateMailbox(s) => s.verify(b, pk).map(|_| ()),
            Request::Secure(s) => s.verify(b, pk).map(|_| ()),
            Request::Subscribe(s) => s.verify(b, pk).map(|_| ()),
            Request::Ack(s) => s.verify(b, pk).map(|_| ()),
            Request::Delete(s) => s.verify(b, pk).map(|_| ()),
            _ => Ok(()),
        };
        check(&binding, k.public()).unwrap();
        if matches!(
            decoded,
            Request::CreateMailbox(_)
                | Request::Secure(_)
                | Request::Subscribe(_)
                | Request::Ack(_)
                | Request::Delete(_)
        ) {
            assert_eq!(check(&other, k.public()), Err(Error::VerificationFailed));
            assert_eq!(
                check(&binding, key(2).public()),
                Err(Error::VerificationFailed)
            );
        }
    }
}

#[test]
fn responses_round_trip() {
    let responses = [
        Response::Ok,
        Response::Hello { version: 1 },
        Response::MailboxCreated {
            receive_id: MailboxId([1; 16]),
            send_id: MailboxId([2; 16]),
            relay_dh: [3; 32],
        },
        Response::Stored,
        Response::Deliver(vec![
            4;
            SEAL_NONCE_LEN
                + ENVELOPE_OVERHEAD
                + BODY_SMALL
                + SEAL_TAG_LEN
        ]),
        Response::SubscriptionEnded(EndReason::TakenOver),
        Response::SubscriptionEnded(EndReason::Deleted),
        Response::Error(RelayError::Quota),
        Response::Error(RelayError::UnsupportedVersion { min: 1, max: 1 }),
        Response::Error(RelayError::RateLimited {
            retry_after_secs: 30,
        }),
        Response::Error(RelayError::Other(999)),
        Response::Error(RelayError::NotOwnClient),
        Response::Error(RelayError::ForwardQueueFull),
        Response::Error(RelayError::Unreachable),
        Response::RelayKey(Box::new(RelayKey::sign(&key(3), [4; 32], 99))),
        Response::Queued,
        Response::ForwardStatus(vec![
            ForwardState::Unknown,
            ForwardState::Queued,
            ForwardState::Stored,
            ForwardState::Expired,
            ForwardState::Refused(4),
        ]),
    ];
    for resp in responses {
        let bytes = resp.to_bytes();
        assert_eq!(Response::decode(&bytes).unwrap(), resp, "{resp:?}");
    }
}

#[test]
fn unknown_tags_and_versions() {
    assert_eq!(Request::decode(&[0x1f]), Err(DecodeError::UnknownTag(0x1f)));
    // Sealed forwards of any other length, and empty or oversized
    // status queries, are refused before allocation.
    let mut odd = vec![0x12];
    odd.extend_from_slice(&[0; 100]);
    assert!(Request::decode(&odd).is_err());
    assert!(Request::decode(&[0x13, 0]).is_err());
    let mut many = vec![0x13, 65];
    many.extend_from_slice(&[0; 65 * 16]);
    assert!(Request::decode(&many).is_err());
    assert!(Response::decode(&[0x48, 1, 4, 0, 0]).is_err());
    assert!(Response::decode(&[0x48, 1, 5, 0, 0]).is_err());
    assert_eq!(Response::decode(&[0x00]), Err(DecodeError::UnknownTag(0)));
    assert_eq!(Request::decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(negotiate_version(1, 3), Ok(1));
    assert_eq!(
        negotiate_version(2, 3),
        Err(RelayError::UnsupportedVersion { min: 1, max: 1 })
    );
}
