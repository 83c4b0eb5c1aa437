//! The mailbox model over the network.

use enlace_protocol::command::{EndReason, RelayError, Request, Response};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::MessageId;
use enlace_quic::{SubscriptionEvent, TransportError};

use enlace_tests::WAIT;
use enlace_tests::mailbox::{envelope, key, next_envelope, secured_mailbox};
use enlace_tests::relay::Relay;

#[tokio::test]
async fn create_secure_send_subscribe_ack_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let recipient_conn = relay.connect().await;
    let sender_conn = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = recipient_conn.create_mailbox(&recipient).await.unwrap();
    assert_ne!(mb.receive_id, mb.send_id);
    let key_bytes = *mb.delivery_key.to_bytes();

    // First contact before securing, then secure with the sender's key.
    let first = envelope(&sender, mb.send_id);
    sender_conn.send(&first).await.unwrap();
    recipient_conn
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    let mut sent = vec![first];
    for _ in 0..4 {
        let env = envelope(&sender, mb.send_id);
        sender_conn.send(&env).await.unwrap();
        sent.push(env);
    }

    let mut sub = recipient_conn
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();
    // Several deliveries arrive without any ack: the window is not one.
    let mut got = Vec::new();
    for _ in 0..sent.len() {
        got.push(next_envelope(&mut sub).await);
    }
    assert_eq!(got, sent);
    // Pushed live while subscribed.
    let live = envelope(&sender, mb.send_id);
    sender_conn.send(&live).await.unwrap();
    assert_eq!(next_envelope(&mut sub).await, live);
    for env in got.iter().chain([&live]) {
        sub.ack(env.message_id(), &recipient).await.unwrap();
    }
    // Finishing the subscription waits for the relay to process every
    // pipelined ack.
    sub.finish().await.unwrap();

    // Acked envelopes are gone: a new subscription starts with a new one.
    let after = envelope(&sender, mb.send_id);
    sender_conn.send(&after).await.unwrap();
    let dk = DeliveryKey::from_bytes(key_bytes);
    let mut sub = recipient_conn
        .subscribe(mb.receive_id, &recipient, dk)
        .await
        .unwrap();
    assert_eq!(next_envelope(&mut sub).await, after);
    recipient_conn
        .ack(mb.receive_id, after.message_id(), &recipient)
        .await
        .unwrap();

    // Delete: the subscriber is told; senders learn the mailbox is gone.
    recipient_conn
        .delete(mb.receive_id, &recipient)
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
    {
        SubscriptionEvent::Ended(EndReason::Deleted) => {}
        other => panic!("{other:?}"),
    }
    sub.finish().await.unwrap();
    assert!(matches!(
        sender_conn.send(&envelope(&sender, mb.send_id)).await,
        Err(TransportError::Relay(RelayError::UnknownMailbox))
    ));
    recipient_conn.close().await;
    sender_conn.close().await;

    // The default-level log names no client address, mailbox id or key.
    let log = relay.log_text();
    assert!(log.contains("listening"), "{log}");
    for secret in [
        "127.0.0.1".to_owned(),
        mb.receive_id.to_hex(),
        mb.send_id.to_hex(),
        hex(recipient.public().as_bytes()),
        hex(&key_bytes),
    ] {
        assert!(!log.contains(&secret), "log reveals {secret}:\n{log}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn unacked_are_redelivered_acked_are_gone_and_takeover_is_announced() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let (recipient, sender) = (key(), key());
    let first_conn = relay.connect().await;
    let mb = first_conn.create_mailbox(&recipient).await.unwrap();
    let key_bytes = *mb.delivery_key.to_bytes();
    first_conn
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    let (a, b) = (envelope(&sender, mb.send_id), envelope(&sender, mb.send_id));
    first_conn.send(&a).await.unwrap();
    first_conn.send(&b).await.unwrap();

    let mut first = first_conn
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();
    assert_eq!(next_envelope(&mut first).await, a);
    assert_eq!(next_envelope(&mut first).await, b);
    // Ack only `a`, and wait for the relay to confirm it on its own stream.
    first_conn
        .ack(mb.receive_id, a.message_id(), &recipient)
        .await
        .unwrap();

    // A second connection subscribes: it takes over, the first is told.
    let second_conn = relay.connect().await;
    let dk = DeliveryKey::from_bytes(key_bytes);
    let mut second = second_conn
        .subscribe(mb.receive_id, &recipient, dk)
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, first.next())
        .await
        .unwrap()
        .unwrap()
    {
        SubscriptionEvent::Ended(EndReason::TakenOver) => {}
        other => panic!("{other:?}"),
    }
    // The unacked `b` is redelivered; the acked `a` is gone.
    assert_eq!(next_envelope(&mut second).await, b);
    let c = envelope(&sender, mb.send_id);
    first_conn.send(&c).await.unwrap();
    assert_eq!(next_envelope(&mut second).await, c);
    first_conn.close().await;
    second_conn.close().await;
}

#[tokio::test]
async fn quota_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &["--quota", "3"]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let env = envelope(&sender, mb.send_id);
        conn.send(&env).await.unwrap();
        sent.push(env);
    }
    assert!(matches!(
        conn.send(&envelope(&sender, mb.send_id)).await,
        Err(TransportError::Relay(RelayError::Quota))
    ));
    // A resend of a stored message id is not a new envelope.
    conn.send(&sent[0]).await.unwrap();
    // Acking frees room.
    conn.ack(mb.receive_id, sent[0].message_id(), &recipient)
        .await
        .unwrap();
    conn.send(&envelope(&sender, mb.send_id)).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn secured_mailbox_refuses_envelopes_not_signed_by_the_sender_key() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &["--first-contact-limit", "2"]).await;
    let conn = relay.connect().await;
    let (recipient, sender, stranger) = (key(), key(), key());
    let mb = conn.create_mailbox(&recipient).await.unwrap();
    // Unsecured: first contact is accepted unsigned, but only a few.
    conn.send(&envelope(&stranger, mb.send_id)).await.unwrap();
    conn.send(&envelope(&stranger, mb.send_id)).await.unwrap();
    assert!(matches!(
        conn.send(&envelope(&stranger, mb.send_id)).await,
        Err(TransportError::Relay(RelayError::Auth))
    ));
    conn.secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    assert!(matches!(
        conn.send(&envelope(&stranger, mb.send_id)).await,
        Err(TransportError::Relay(RelayError::Auth))
    ));
    conn.send(&envelope(&sender, mb.send_id)).await.unwrap();
    conn.close().await;
}

#[tokio::test]
async fn recipient_command_replayed_on_another_connection_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let a = relay.connect().await;
    let b = relay.connect().await;
    let recipient = key();
    let mb = a.create_mailbox(&recipient).await.unwrap();
    let env = envelope(&key(), mb.send_id);
    a.send(&env).await.unwrap();
    // Signed for connection `a`, captured and replayed on `b`.
    for captured in [
        Request::subscribe(mb.receive_id, &recipient, a.binding()),
        Request::ack(mb.receive_id, env.message_id(), &recipient, a.binding()),
        Request::delete(mb.receive_id, &recipient, a.binding()),
        Request::secure(mb.receive_id, *key().public(), &recipient, a.binding()),
    ] {
        assert_eq!(
            b.request(&captured).await.unwrap(),
            Response::Error(RelayError::Auth)
        );
    }
    let ack_a = Request::ack(mb.receive_id, MessageId([0; 16]), &recipient, a.binding());
    assert_eq!(a.request(&ack_a).await.unwrap(), Response::Ok);
    let mut sub = a
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();
    assert_eq!(next_envelope(&mut sub).await, env);
    a.close().await;
    b.close().await;
}
