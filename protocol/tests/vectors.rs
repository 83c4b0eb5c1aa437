//! Runs every test vector in `protocol/testdata/`, using only the public API,
//! as an independent implementation would.
//!
//! `cargo test -p enlace-protocol --test vectors -- --ignored regenerate`
//! rewrites the files from the current implementation; the normal run only
//! checks them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::convert::Infallible;
use std::path::PathBuf;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{
    ConnectionBinding, EndReason, Forward, ForwardId, ForwardState, RelayError, Request, Response,
};
use enlace_protocol::delivery::{DeliveryKey, DhKeyPair};
use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::forward::{ForwardKey, RelayKey, seal_send};
use enlace_protocol::frame::{decode_frame, encode_frame};
use enlace_protocol::keys::{Fingerprint, PublicKey, SafetyNumber, SigningKeyPair};
use enlace_protocol::limits::{BODY_LARGE, BODY_MEDIUM, BODY_SMALL, MAX_FRAME_LEN};
use enlace_protocol::{DecodeError, Error};
use serde_json::{Value, json};

/// A deterministic "RNG" that replays fixed bytes: lets vectors pin values
/// the API would otherwise draw at random (the relay's X25519 secret, nonces).
struct Replay(Vec<u8>, usize);

impl rand_core::TryRng for Replay {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.0[self.1 % self.0.len()];
            self.1 += 1;
        }
        Ok(())
    }
}
impl rand_core::TryCryptoRng for Replay {}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn save(name: &str, description: &str, vectors: Vec<Value>) {
    let doc = json!({ "description": description, "vectors": vectors });
    std::fs::write(
        dir().join(name),
        serde_json::to_string_pretty(&doc).unwrap() + "\n",
    )
    .unwrap();
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn a32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

fn a16(v: &Value) -> [u8; 16] {
    h(v).try_into().unwrap()
}

fn seed(i: u8) -> [u8; 32] {
    std::array::from_fn(|j| i.wrapping_mul(31).wrapping_add(j as u8))
}

fn body(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 7 + usize::from(salt)) % 251) as u8)
        .collect()
}

const BINDING: [u8; 32] = [0x42; 32];
const RECEIVE_ID: [u8; 16] = [0xa1; 16];
const RECIPIENT_DH: [u8; 32] = [0x11; 32];
const RELAY_DH_SECRET: [u8; 32] = [0x22; 32];
const NONCE: [u8; 24] = [0x33; 24];
const FORWARD_DH_SECRET: [u8; 32] = [0x44; 32];
const EPH_SECRET: [u8; 32] = [0x55; 32];
const RELAY_KEY_EXPIRES: u64 = 1_900_000_000;

/// The name an implementation reports for a rejection.
fn error_name(e: &Error) -> &'static str {
    match e {
        Error::Decode(d) => match d {
            DecodeError::Truncated => "truncated",
            DecodeError::TrailingBytes(_) => "trailing_bytes",
            DecodeError::FrameTooLarge(_) => "frame_too_large",
            DecodeError::UnknownTag(_) => "unknown_tag",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::InvalidBodySize(_) => "invalid_body_size",
            DecodeError::InvalidField("empty frame") => "invalid_frame",
            DecodeError::InvalidField(_) => "invalid_field",
            _ => "other",
        },
        Error::VerificationFailed => "verification_failed",
        _ => "other",
    }
}

// ---------------------------------------------------------------- generation

fn gen_keys() -> Vec<Value> {
    let keys: Vec<SigningKeyPair> = (1..=3)
        .map(|i| SigningKeyPair::from_secret_bytes(&seed(i)))
        .collect();
    let mut v: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "kind": "key",
                "seed": hex::encode(*k.secret_bytes()),
                "public_key": hex::encode(k.public().as_bytes()),
                "identity_fingerprint": k.public().identity_fingerprint().to_string(),
                "relay_fingerprint": k.public().relay_fingerprint().to_string(),
            })
        })
        .collect();
    for (a, b) in [(0, 1), (1, 2)] {
        v.push(json!({
            "kind": "safety_number",
            "a": hex::encode(keys[a].public().as_bytes()),
            "b": hex::encode(keys[b].public().as_bytes()),
            "digits": SafetyNumber::new(keys[a].public(), keys[b].public()).digits(),
        }));
    }
    v
}

fn sample_envelope(class_len: usize, salt: u8) -> (SigningKeyPair, Envelope) {
    let sender = SigningKeyPair::from_secret_bytes(&seed(10 + salt));
    let env = Envelope::sign(
        &sender,
        MailboxId([0x5e; 16]),
        MessageId(std::array::from_fn(|i| i as u8 + salt)),
        CoarseTime::from_unix_secs(1_795_000_000),
        &body(class_len, salt),
    )
    .unwrap();
    (sender, env)
}

fn gen_envelopes() -> Vec<Value> {
    [BODY_SMALL, BODY_MEDIUM, BODY_LARGE]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let (sender, env) = sample_envelope(len, i as u8);
            json!({
                "sender_seed": hex::encode(*sender.secret_bytes()),
                "sender_key": hex::encode(sender.public().as_bytes()),
                "send_id": env.send_id().to_hex(),
                "message_id": env.message_id().to_hex(),
                "timestamp": env.timestamp().0,
                "body_len": len,
                "envelope": hex::encode(env.as_bytes()),
            })
        })
        .collect()
}

fn gen_frames() -> Vec<Value> {
    [
        b"\x01".to_vec(),
        Request::hello().to_bytes(),
        vec![0xab; 300],
    ]
    .iter()
    .map(|p| {
        let mut f = Vec::new();
        encode_frame(p, &mut f).unwrap();
        json!({ "payload": hex::encode(p), "frame": hex::encode(f) })
    })
    .collect()
}

fn sample_requests() -> Vec<(&'static str, Request)> {
    let recipient = SigningKeyPair::from_secret_bytes(&seed(20));
    let sender = SigningKeyPair::from_secret_bytes(&seed(21));
    let binding = ConnectionBinding(BINDING);
    let rid = MailboxId(RECEIVE_ID);
    let (_, env) = sample_envelope(BODY_SMALL, 0);
    vec![
        (
            "hello",
            Request::Hello {
                min_version: 1,
                max_version: 1,
            },
        ),
        (
            "create_mailbox",
            Request::create_mailbox(&recipient, [0x09; 32], &binding),
        ),
        (
            "secure",
            Request::secure(rid, *sender.public(), &recipient, &binding),
        ),
        ("send", Request::Send(env)),
        ("subscribe", Request::subscribe(rid, &recipient, &binding)),
        (
            "ack",
            Request::ack(rid, MessageId([0xb2; 16]), &recipient, &binding),
        ),
        ("delete", Request::delete(rid, &recipient, &binding)),
        (
            "fetch_relay_key",
            Request::FetchRelayKey {
                destination: sample_destination(),
            },
        ),
        (
            "forward",
            Request::Forward(Forward {
                destination: sample_destination(),
                forward_id: ForwardId([0xf1; 16]),
                sealed: sample_forward().1,
            }),
        ),
        (
            "relay_deliver",
            Request::RelayDeliver {
                sealed: sample_forward().1,
            },
        ),
        (
            "forward_status",
            Request::ForwardStatus {
                ids: vec![ForwardId([0xf1; 16]), ForwardId([0xf2; 16])],
            },
        ),
    ]
}

/// The destination relay of the forwarding vectors: its identity and
/// forwarding key.
fn forward_relay() -> (SigningKeyPair, DhKeyPair) {
    (
        SigningKeyPair::from_secret_bytes(&seed(30)),
        DhKeyPair::from_secret_bytes(FORWARD_DH_SECRET),
    )
}

fn sample_destination() -> RelayAddress {
    let (relay, _) = forward_relay();
    RelayAddress::new(relay.public().relay_fingerprint(), "relay.example", 4433).unwrap()
}

/// The relay key bundle and a sealed forward of the small sample envelope,
/// with a fixed ephemeral secret and nonce.
fn sample_forward() -> (RelayKey, Vec<u8>) {
    let (relay, fdh) = forward_relay();
    let bundle = RelayKey::sign(&relay, *fdh.public(), RELAY_KEY_EXPIRES);
    let (_, env) = sample_envelope(BODY_SMALL, 0);
    let mut rng = Replay([EPH_SECRET.as_slice(), &NONCE].concat(), 0);
    let sealed = seal_send(
        &mut rng,
        &relay.public().relay_fingerprint(),
        fdh.public(),
        &env,
    )
    .unwrap();
    (bundle, sealed)
}

fn gen_forward() -> Vec<Value> {
    let (relay, fdh) = forward_relay();
    let (bundle, sealed) = sample_forward();
    let (_, env) = sample_envelope(BODY_SMALL, 0);
    let mut bundle_bytes = Vec::new();
    bundle.encode(&mut bundle_bytes);
    vec![json!({
        "relay_seed": hex::encode(*relay.secret_bytes()),
        "relay_fingerprint": hex::encode(relay.public().relay_fingerprint().0),
        "forward_dh_secret": hex::encode(FORWARD_DH_SECRET),
        "forward_dh": hex::encode(fdh.public()),
        "expires": RELAY_KEY_EXPIRES,
        "relay_key": hex::encode(bundle_bytes),
        "eph_secret": hex::encode(EPH_SECRET),
        "nonce": hex::encode(NONCE),
        "envelope": hex::encode(env.as_bytes()),
        "sealed": hex::encode(sealed),
    })]
}

fn gen_fail_forward() -> Vec<Value> {
    let (relay, _) = forward_relay();
    let (bundle, sealed) = sample_forward();
    let mut bundle_bytes = Vec::new();
    bundle.encode(&mut bundle_bytes);
    let fp = hex::encode(relay.public().relay_fingerprint().0);
    let k = json!({
        "relay_fingerprint": fp,
        "forward_dh_secret": hex::encode(FORWARD_DH_SECRET),
        "now": RELAY_KEY_EXPIRES - 1,
    });
    let mut flipped = sealed.clone();
    flipped[100] ^= 1;
    let mut other_relay = k.clone();
    other_relay["relay_fingerprint"] = json!(hex::encode(
        SigningKeyPair::from_secret_bytes(&seed(31))
            .public()
            .relay_fingerprint()
            .0
    ));
    let mut expired = k.clone();
    expired["now"] = json!(RELAY_KEY_EXPIRES);
    let mut swapped_key = bundle_bytes.clone();
    swapped_key[40] ^= 1;
    vec![
        fail(
            "tampered",
            "forward",
            &flipped,
            "verification_failed",
            k.clone(),
        ),
        fail(
            "other_destination",
            "forward",
            &sealed,
            "verification_failed",
            other_relay.clone(),
        ),
        fail(
            "odd_length",
            "forward",
            &sealed[..sealed.len() - 1],
            "invalid_field",
            k.clone(),
        ),
        fail(
            "bundle_of_another_relay",
            "relay_key",
            &bundle_bytes,
            "verification_failed",
            other_relay,
        ),
        fail(
            "bundle_expired",
            "relay_key",
            &bundle_bytes,
            "verification_failed",
            expired,
        ),
        fail(
            "bundle_key_swapped",
            "relay_key",
            &swapped_key,
            "verification_failed",
            k.clone(),
        ),
        fail(
            "bundle_truncated",
            "relay_key",
            &bundle_bytes[..100],
            "truncated",
            k,
        ),
    ]
}

fn gen_requests() -> Vec<Value> {
    let recipient = SigningKeyPair::from_secret_bytes(&seed(20));
    sample_requests()
        .into_iter()
        .map(|(name, r)| {
            json!({
                "name": name,
                "recipient_seed": hex::encode(*recipient.secret_bytes()),
                "binding": hex::encode(BINDING),
                "payload": hex::encode(r.to_bytes()),
            })
        })
        .collect()
}

fn gen_responses() -> Vec<Value> {
    let (_, sealed) = sample_delivery();
    [
        ("ok", Response::Ok),
        ("hello", Response::Hello { version: 1 }),
        (
            "mailbox_created",
            Response::MailboxCreated {
                receive_id: MailboxId(RECEIVE_ID),
                send_id: MailboxId([0x5e; 16]),
                relay_dh: [0x33; 32],
            },
        ),
        ("stored", Response::Stored),
        ("deliver", Response::Deliver(sealed)),
        (
            "subscription_ended_taken_over",
            Response::SubscriptionEnded(EndReason::TakenOver),
        ),
        (
            "subscription_ended_deleted",
            Response::SubscriptionEnded(EndReason::Deleted),
        ),
        ("error_malformed", Response::Error(RelayError::Malformed)),
        (
            "error_unsupported_version",
            Response::Error(RelayError::UnsupportedVersion { min: 1, max: 1 }),
        ),
        ("error_auth", Response::Error(RelayError::Auth)),
        (
            "error_unknown_mailbox",
            Response::Error(RelayError::UnknownMailbox),
        ),
        ("error_quota", Response::Error(RelayError::Quota)),
        ("error_too_large", Response::Error(RelayError::TooLarge)),
        (
            "error_storage_full",
            Response::Error(RelayError::StorageFull),
        ),
        (
            "error_rate_limited",
            Response::Error(RelayError::RateLimited {
                retry_after_secs: 60,
            }),
        ),
        ("error_internal", Response::Error(RelayError::Internal)),
        (
            "error_unknown_command",
            Response::Error(RelayError::UnknownCommand),
        ),
        (
            "error_not_own_client",
            Response::Error(RelayError::NotOwnClient),
        ),
        (
            "error_forward_queue_full",
            Response::Error(RelayError::ForwardQueueFull),
        ),
        (
            "error_unreachable",
            Response::Error(RelayError::Unreachable),
        ),
        (
            "relay_key",
            Response::RelayKey(Box::new(sample_forward().0)),
        ),
        ("queued", Response::Queued),
        (
            "forward_status",
            Response::ForwardStatus(vec![
                ForwardState::Unknown,
                ForwardState::Queued,
                ForwardState::Stored,
                ForwardState::Expired,
                ForwardState::Refused(4),
            ]),
        ),
    ]
    .into_iter()
    .map(|(name, r)| json!({ "name": name, "payload": hex::encode(r.to_bytes()) }))
    .collect()
}

fn sample_delivery() -> (DeliveryKey, Vec<u8>) {
    let recipient = DhKeyPair::from_secret_bytes(RECIPIENT_DH);
    let (key, _) =
        DeliveryKey::for_relay(&mut Replay(RELAY_DH_SECRET.to_vec(), 0), recipient.public())
            .unwrap();
    let (_, env) = sample_envelope(BODY_SMALL, 0);
    let sealed = key.seal(
        &mut Replay(NONCE.to_vec(), 0),
        &MailboxId(RECEIVE_ID),
        env.as_bytes(),
    );
    (key, sealed)
}

fn gen_delivery() -> Vec<Value> {
    let recipient = DhKeyPair::from_secret_bytes(RECIPIENT_DH);
    let (key, relay_dh) =
        DeliveryKey::for_relay(&mut Replay(RELAY_DH_SECRET.to_vec(), 0), recipient.public())
            .unwrap();
    let (_, sealed) = sample_delivery();
    let (_, env) = sample_envelope(BODY_SMALL, 0);
    vec![json!({
        "recipient_dh_secret": hex::encode(RECIPIENT_DH),
        "recipient_dh": hex::encode(recipient.public()),
        "relay_dh_secret": hex::encode(RELAY_DH_SECRET),
        "relay_dh": hex::encode(relay_dh),
        "delivery_key": hex::encode(*key.to_bytes()),
        "receive_id": hex::encode(RECEIVE_ID),
        "nonce": hex::encode(NONCE),
        "envelope": hex::encode(env.as_bytes()),
        "sealed": hex::encode(sealed),
    })]
}

fn fail(name: &str, kind: &str, bytes: &[u8], error: &str, extra: Value) -> Value {
    let mut v = json!({ "name": name, "kind": kind, "input": hex::encode(bytes), "error": error });
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v
}

fn gen_fail_frames() -> Vec<Value> {
    let none = Value::Null;
    let mut max_plus_one = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes().to_vec();
    max_plus_one.extend_from_slice(&[0; 16]);
    vec![
        fail(
            "truncated_header",
            "frame",
            &[0, 0, 0],
            "truncated",
            none.clone(),
        ),
        fail(
            "truncated_payload",
            "frame",
            b"\x00\x00\x00\x05abc",
            "truncated",
            none.clone(),
        ),
        fail(
            "trailing_bytes",
            "frame",
            b"\x00\x00\x00\x01ab",
            "trailing_bytes",
            none.clone(),
        ),
        fail(
            "zero_length",
            "frame",
            &[0, 0, 0, 0],
            "invalid_frame",
            none.clone(),
        ),
        fail(
            "length_4_gib",
            "frame",
            &[0xff, 0xff, 0xff, 0xff],
            "frame_too_large",
            none.clone(),
        ),
        fail(
            "length_max_plus_one",
            "frame",
            &max_plus_one,
            "frame_too_large",
            none,
        ),
    ]
}

fn gen_fail_envelopes() -> Vec<Value> {
    use ed25519_dalek::Signer;
    let (sender, env) = sample_envelope(BODY_SMALL, 0);
    let key = json!({ "sender_key": hex::encode(sender.public().as_bytes()) });
    let good = env.as_bytes().to_vec();
    let signed = &good[..good.len() - 64];
    let dalek = ed25519_dalek::SigningKey::from_bytes(&sender.secret_bytes());
    let with_sig = |sig: [u8; 64]| [signed, &sig[..]].concat();
    let patched = |at: usize, value: u8| {
        let mut b = good.clone();
        b[at] = value;
        b
    };
    let mut wrong_domain_msg = b"enlace/v1/recipient-command\x00".to_vec();
    wrong_domain_msg.extend_from_slice(signed);
    let other = SigningKeyPair::from_secret_bytes(&seed(99));
    let forged = Envelope::sign(
        &other,
        env.send_id(),
        env.message_id(),
        env.timestamp(),
        env.body(),
    )
    .unwrap();
    let body_one_long = [&good[..38 + BODY_SMALL], &[0], &good[38 + BODY_SMALL..]].concat();
    let mut bad_sig = good.clone();
    *bad_sig.last_mut().unwrap() ^= 0x01;
    [
        ("truncated", good[..good.len() - 1].to_vec(), "truncated"),
        (
            "trailing_byte",
            [&good[..], &[0]].concat(),
            "trailing_bytes",
        ),
        ("unknown_version", patched(0, 2), "unsupported_version"),
        ("unknown_size_class", patched(37, 4), "invalid_body_size"),
        // Class says 16 KiB, the body is 2 KiB: wrong padding size.
        ("wrong_padding_size", patched(37, 2), "truncated"),
        ("body_one_byte_long", body_one_long, "trailing_bytes"),
        ("bad_signature", bad_sig, "verification_failed"),
        (
            "altered_body",
            patched(100, good[100] ^ 0x80),
            "verification_failed",
        ),
        (
            "wrong_domain",
            with_sig(dalek.sign(&wrong_domain_msg).to_bytes()),
            "verification_failed",
        ),
        (
            "no_domain",
            with_sig(dalek.sign(signed).to_bytes()),
            "verification_failed",
        ),
        (
            "wrong_key",
            forged.as_bytes().to_vec(),
            "verification_failed",
        ),
    ]
    .into_iter()
    .map(|(name, bytes, error)| fail(name, "envelope", &bytes, error, key.clone()))
    .collect()
}

fn gen_fail_requests() -> Vec<Value> {
    let recipient = SigningKeyPair::from_secret_bytes(&seed(20));
    let rk = hex::encode(recipient.public().as_bytes());
    let reqs = sample_requests();
    let sub = reqs
        .iter()
        .find(|(n, _)| *n == "subscribe")
        .unwrap()
        .1
        .to_bytes();
    let create = reqs
        .iter()
        .find(|(n, _)| *n == "create_mailbox")
        .unwrap()
        .1
        .to_bytes();
    let none = Value::Null;
    let with_key = |key: [u8; 32]| {
        let mut b = create.clone();
        b[1..33].copy_from_slice(&key);
        b
    };
    let mut small_order = [0u8; 32];
    small_order[0] = 1;
    let with = |binding: [u8; 32], key: &str| json!({ "binding": hex::encode(binding), "recipient_key": key });
    let other_key = hex::encode(
        SigningKeyPair::from_secret_bytes(&seed(21))
            .public()
            .as_bytes(),
    );
    vec![
        fail("empty", "request", &[], "truncated", none.clone()),
        fail(
            "reserved_forwarding_tag_unknown",
            "request",
            &[0x1f],
            "unknown_tag",
            none.clone(),
        ),
        fail(
            "unknown_tag",
            "request",
            &[0x3f, 0, 0],
            "unknown_tag",
            none.clone(),
        ),
        fail(
            "hello_truncated",
            "request",
            &[0x01, 0, 1, 0],
            "truncated",
            none.clone(),
        ),
        fail(
            "subscribe_truncated",
            "request",
            &sub[..sub.len() - 1],
            "truncated",
            none.clone(),
        ),
        fail(
            "subscribe_trailing",
            "request",
            &[&sub[..], &[0]].concat(),
            "trailing_bytes",
            none.clone(),
        ),
        fail(
            "create_invalid_key",
            "request",
            &with_key([0xff; 32]),
            "invalid_field",
            none.clone(),
        ),
        fail(
            "create_small_order_key",
            "request",
            &with_key(small_order),
            "invalid_field",
            none,
        ),
        fail(
            "subscribe_replayed_on_other_connection",
            "request",
            &sub,
            "verification_failed",
            with([0x43; 32], &rk),
        ),
        fail(
            "subscribe_wrong_key",
            "request",
            &sub,
            "verification_failed",
            with(BINDING, &other_key),
        ),
    ]
}

fn gen_fail_responses() -> Vec<Value> {
    [
        ("unknown_tag", vec![0x00], "unknown_tag"),
        ("error_code_zero", vec![0x7f, 0, 0], "invalid_field"),
        ("deliver_too_short", vec![0x44; 100], "truncated"),
        ("hello_trailing", vec![0x41, 0, 1, 0], "trailing_bytes"),
        ("ok_trailing", vec![0x40, 0], "trailing_bytes"),
    ]
    .into_iter()
    .map(|(name, bytes, error)| fail(name, "response", &bytes, error, Value::Null))
    .collect()
}

fn gen_fail_delivery() -> Vec<Value> {
    let (key, sealed) = sample_delivery();
    let k = json!({ "delivery_key": hex::encode(*key.to_bytes()), "receive_id": hex::encode(RECEIVE_ID) });
    let mut flipped = sealed.clone();
    flipped[30] ^= 1;
    let mut other_mailbox = k.clone();
    other_mailbox["receive_id"] = json!(hex::encode([0xa2; 16]));
    vec![
        fail(
            "tampered_ciphertext",
            "delivery",
            &flipped,
            "verification_failed",
            k.clone(),
        ),
        fail(
            "wrong_mailbox",
            "delivery",
            &sealed,
            "verification_failed",
            other_mailbox,
        ),
        fail("truncated", "delivery", &sealed[..20], "truncated", k),
    ]
}

#[test]
#[ignore = "rewrites protocol/testdata from the implementation; run by hand after a deliberate format change"]
fn regenerate() {
    save(
        "keys.json",
        "Ed25519 seeds, public keys, fingerprints (base32) and safety numbers",
        gen_keys(),
    );
    save(
        "frames.json",
        "Frame payloads and their length-prefixed encodings",
        gen_frames(),
    );
    save(
        "envelopes.json",
        "Signed envelopes of each size class",
        gen_envelopes(),
    );
    save(
        "requests.json",
        "Every request; recipient commands signed by recipient_seed under binding",
        gen_requests(),
    );
    save("responses.json", "Every response", gen_responses());
    save(
        "delivery.json",
        "Delivery key agreement and a sealed delivery with a fixed nonce",
        gen_delivery(),
    );
    save(
        "fail_frames.json",
        "Frames that must be rejected",
        gen_fail_frames(),
    );
    save(
        "fail_envelopes.json",
        "Envelopes that must be rejected by decoding or by verification with sender_key",
        gen_fail_envelopes(),
    );
    save(
        "fail_requests.json",
        "Requests that must be rejected by decoding or, where binding is given, by verification with recipient_key",
        gen_fail_requests(),
    );
    save(
        "fail_responses.json",
        "Responses that must be rejected",
        gen_fail_responses(),
    );
    save(
        "fail_delivery.json",
        "Sealed deliveries that must not open",
        gen_fail_delivery(),
    );
    save(
        "forward.json",
        "A relay key bundle and a sealed forward with a fixed ephemeral secret and nonce",
        gen_forward(),
    );
    save(
        "fail_forward.json",
        "Sealed forwards that must not open and relay key bundles that must not verify",
        gen_fail_forward(),
    );
}

// ------------------------------------------------------------------ checking

#[test]
fn keys() {
    let vectors = load("keys.json");
    assert!(vectors.len() >= 5);
    for v in vectors {
        match v["kind"].as_str().unwrap() {
            "key" => {
                let k = SigningKeyPair::from_secret_bytes(&a32(&v["seed"]));
                assert_eq!(
                    hex::encode(k.public().as_bytes()),
                    v["public_key"].as_str().unwrap()
                );
                assert_eq!(
                    k.public().identity_fingerprint().to_string(),
                    v["identity_fingerprint"].as_str().unwrap()
                );
                assert_eq!(
                    k.public().relay_fingerprint().to_string(),
                    v["relay_fingerprint"].as_str().unwrap()
                );
            }
            "safety_number" => {
                let a = PublicKey::from_bytes(&a32(&v["a"])).unwrap();
                let b = PublicKey::from_bytes(&a32(&v["b"])).unwrap();
                assert_eq!(
                    SafetyNumber::new(&a, &b).digits(),
                    v["digits"].as_str().unwrap()
                );
                assert_eq!(
                    SafetyNumber::new(&b, &a).digits(),
                    v["digits"].as_str().unwrap()
                );
            }
            other => panic!("unknown kind {other}"),
        }
    }
}

#[test]
fn frames() {
    for v in load("frames.json") {
        let payload = h(&v["payload"]);
        let frame = h(&v["frame"]);
        assert_eq!(decode_frame(&frame).unwrap(), payload);
        let mut out = Vec::new();
        encode_frame(&payload, &mut out).unwrap();
        assert_eq!(out, frame);
    }
}

#[test]
fn envelopes() {
    let vectors = load("envelopes.json");
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let bytes = h(&v["envelope"]);
        let env = Envelope::decode(&bytes).unwrap();
        let key = PublicKey::from_bytes(&a32(&v["sender_key"])).unwrap();
        env.verify(&key).unwrap();
        assert_eq!(env.send_id().to_hex(), v["send_id"].as_str().unwrap());
        assert_eq!(env.message_id().to_hex(), v["message_id"].as_str().unwrap());
        assert_eq!(
            u64::from(env.timestamp().0),
            v["timestamp"].as_u64().unwrap()
        );
        assert_eq!(env.body().len() as u64, v["body_len"].as_u64().unwrap());
        // Signing is deterministic (RFC 8032): the same inputs give the same bytes.
        let sender = SigningKeyPair::from_secret_bytes(&a32(&v["sender_seed"]));
        assert_eq!(sender.public(), &key);
        let again = Envelope::sign(
            &sender,
            env.send_id(),
            env.message_id(),
            env.timestamp(),
            env.body(),
        )
        .unwrap();
        assert_eq!(again.as_bytes(), &bytes[..]);
    }
}

#[test]
fn requests() {
    let vectors = load("requests.json");
    assert_eq!(vectors.len(), 11);
    for (v, (name, expected)) in vectors.iter().zip(sample_requests()) {
        assert_eq!(v["name"].as_str().unwrap(), name);
        let payload = h(&v["payload"]);
        let decoded = Request::decode(&payload).unwrap();
        assert_eq!(decoded.to_bytes(), payload);
        assert_eq!(decoded, expected, "{name}");
        let binding = ConnectionBinding(a32(&v["binding"]));
        let key = SigningKeyPair::from_secret_bytes(&a32(&v["recipient_seed"]));
        let verified = match &decoded {
            Request::CreateMailbox(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Secure(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Subscribe(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Ack(s) => s.verify(&binding, key.public()).is_ok(),
            Request::Delete(s) => s.verify(&binding, key.public()).is_ok(),
            _ => true,
        };
        assert!(verified, "{name}");
    }
}

#[test]
fn responses() {
    let vectors = load("responses.json");
    assert!(vectors.len() >= 23);
    for v in vectors {
        let payload = h(&v["payload"]);
        let decoded = Response::decode(&payload).unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert_eq!(decoded.to_bytes(), payload);
    }
}

#[test]
fn delivery() {
    for v in load("delivery.json") {
        let recipient = DhKeyPair::from_secret_bytes(a32(&v["recipient_dh_secret"]));
        assert_eq!(recipient.public(), &a32(&v["recipient_dh"]));
        let (relay_key, relay_dh) =
            DeliveryKey::for_relay(&mut Replay(h(&v["relay_dh_secret"]), 0), recipient.public())
                .unwrap();
        assert_eq!(relay_dh, a32(&v["relay_dh"]));
        let key = DeliveryKey::for_recipient(&recipient, &relay_dh).unwrap();
        assert_eq!(*key.to_bytes(), a32(&v["delivery_key"]));
        assert_eq!(*relay_key.to_bytes(), a32(&v["delivery_key"]));
        let rid = MailboxId(a16(&v["receive_id"]));
        let sealed = h(&v["sealed"]);
        assert_eq!(
            key.seal(&mut Replay(h(&v["nonce"]), 0), &rid, &h(&v["envelope"])),
            sealed
        );
        assert_eq!(
            key.open(&rid, &sealed).unwrap().as_bytes(),
            &h(&v["envelope"])[..]
        );
    }
}

#[test]
fn forward() {
    for v in load("forward.json") {
        let relay = SigningKeyPair::from_secret_bytes(&a32(&v["relay_seed"]));
        let fp = Fingerprint(a32(&v["relay_fingerprint"]));
        assert_eq!(relay.public().relay_fingerprint(), fp);
        let fdh = DhKeyPair::from_secret_bytes(a32(&v["forward_dh_secret"]));
        assert_eq!(fdh.public(), &a32(&v["forward_dh"]));
        let expires = v["expires"].as_u64().unwrap();
        let bundle = RelayKey::decode(&h(&v["relay_key"])).unwrap();
        let mut again = Vec::new();
        bundle.encode(&mut again);
        assert_eq!(again, h(&v["relay_key"]));
        assert_eq!(
            RelayKey::sign(&relay, *fdh.public(), expires),
            bundle,
            "ed25519 signatures are deterministic"
        );
        assert_eq!(bundle.verify(&fp, expires - 1).unwrap(), *fdh.public());
        let env = Envelope::decode(&h(&v["envelope"])).unwrap();
        let mut rng = Replay([h(&v["eph_secret"]), h(&v["nonce"])].concat(), 0);
        let sealed = seal_send(&mut rng, &fp, fdh.public(), &env).unwrap();
        assert_eq!(sealed, h(&v["sealed"]));
        assert_eq!(ForwardKey::new(fdh, fp).open(&sealed).unwrap(), env);
    }
}

fn check_fail(v: &Value) -> Result<(), Error> {
    let input = h(&v["input"]);
    match v["kind"].as_str().unwrap() {
        "frame" => decode_frame(&input).map(|_| ()).map_err(Error::from),
        "envelope" => {
            let key = PublicKey::from_bytes(&a32(&v["sender_key"]))?;
            Envelope::decode(&input)?.verify(&key)
        }
        "request" => {
            let req = Request::decode(&input)?;
            if v["binding"].is_null() {
                return Ok(());
            }
            let binding = ConnectionBinding(a32(&v["binding"]));
            let key = PublicKey::from_bytes(&a32(&v["recipient_key"]))?;
            match req {
                Request::Subscribe(s) => s.verify(&binding, &key).map(|_| ()),
                other => panic!("unexpected {other:?}"),
            }
        }
        "response" => Response::decode(&input).map(|_| ()).map_err(Error::from),
        "forward" => {
            let key = ForwardKey::new(
                DhKeyPair::from_secret_bytes(a32(&v["forward_dh_secret"])),
                Fingerprint(a32(&v["relay_fingerprint"])),
            );
            key.open(&input).map(|_| ())
        }
        "relay_key" => RelayKey::decode(&input)?
            .verify(
                &Fingerprint(a32(&v["relay_fingerprint"])),
                v["now"].as_u64().unwrap(),
            )
            .map(|_| ()),
        "delivery" => {
            let key = DeliveryKey::from_bytes(a32(&v["delivery_key"]));
            key.open(&MailboxId(a16(&v["receive_id"])), &input)
                .map(|_| ())
        }
        other => panic!("unknown kind {other}"),
    }
}

#[test]
fn fail_vectors_are_rejected_with_the_stated_error() {
    let mut count = 0;
    for file in [
        "fail_frames.json",
        "fail_envelopes.json",
        "fail_requests.json",
        "fail_responses.json",
        "fail_delivery.json",
        "fail_forward.json",
    ] {
        for v in load(file) {
            let name = format!("{file}/{}", v["name"].as_str().unwrap());
            match check_fail(&v) {
                Ok(()) => panic!("{name}: accepted"),
                Err(e) => assert_eq!(
                    error_name(&e),
                    v["error"].as_str().unwrap(),
                    "{name}: {e:?}"
                ),
            }
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} fail vectors");
}

#[test]
fn every_testdata_file_is_checked() {
    let checked = [
        "keys.json",
        "frames.json",
        "envelopes.json",
        "requests.json",
        "responses.json",
        "delivery.json",
        "fail_frames.json",
        "fail_envelopes.json",
        "fail_requests.json",
        "fail_responses.json",
        "fail_delivery.json",
        "forward.json",
        "fail_forward.json",
    ];
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        // Session and group vectors have test files of their own
        // (session_schedules.rs and the session module; group_vectors.rs).
        if name.starts_with("session")
            || name.starts_with("fail_session")
            || name == "group.json"
            || name == "fail_group.json"
        {
            continue;
        }
        assert!(
            checked.contains(&name.as_str()),
            "{name} is not checked by any test"
        );
    }
}
