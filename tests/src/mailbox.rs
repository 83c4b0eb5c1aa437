//! What a test deposits and receives: fresh keys, signed envelopes, a
//! secured mailbox, the next delivery of a subscription.

use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::{BODY_LARGE, BODY_SMALL};
use enlace_quic::{CreatedMailbox, RelayConnection, Subscription, SubscriptionEvent};

use crate::WAIT;

/// A fresh signing key.
pub fn key() -> SigningKeyPair {
    SigningKeyPair::generate(&mut rand::rng())
}

/// An envelope to `send_id` with `body`, signed by `sender`, with a random
/// message id and a fixed coarse time.
pub fn envelope_with_body(sender: &SigningKeyPair, send_id: MailboxId, body: &[u8]) -> Envelope {
    Envelope::sign(
        sender,
        send_id,
        MessageId(rand::random()),
        CoarseTime(500_000),
        body,
    )
    .unwrap()
}

/// A small envelope (its body a run of 0x5a).
pub fn envelope(sender: &SigningKeyPair, send_id: MailboxId) -> Envelope {
    envelope_with_body(sender, send_id, &[0x5a; BODY_SMALL])
}

/// An envelope of the largest size class (its body a run of 0x5a).
pub fn large_envelope(sender: &SigningKeyPair, send_id: MailboxId) -> Envelope {
    envelope_with_body(sender, send_id, &vec![0x5a; BODY_LARGE])
}

/// A new mailbox on `conn`, secured so that it takes only envelopes signed
/// by `sender`; returns its recipient key and ids.
pub async fn secured_mailbox(
    conn: &RelayConnection,
    sender: &SigningKeyPair,
) -> (SigningKeyPair, CreatedMailbox) {
    let recipient = key();
    let mb = conn.create_mailbox(&recipient).await.unwrap();
    conn.secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    (recipient, mb)
}

/// The next delivery of `sub`; anything else, or nothing within
/// [`WAIT`], fails the test.
pub async fn next_envelope(sub: &mut Subscription) -> Envelope {
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no delivery in time")
        .unwrap()
    {
        SubscriptionEvent::Envelope(e) => e,
        other => panic!("expected an envelope, got {other:?}"),
    }
}
