//! Bad input on one connection does not disturb anyone else.

use enlace_client::transport::SubscriptionEvent;
use enlace_protocol::command::{ConnectionBinding, RelayError, Request, Response};

use crate::support::{WAIT, envelope, frame, key, raw_connect, raw_exchange, start};

#[tokio::test]
async fn requests_before_hello_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start(&dir.path().join("relay"), &[]).await;
    let (_endpoint, conn) = raw_connect(&relay).await;
    let create = Request::create_mailbox(&key(), [9; 32], &ConnectionBinding([0; 32]));
    assert_eq!(
        raw_exchange(&conn, &frame(&create)).await,
        Some(Response::Error(RelayError::Malformed))
    );
    let bad = Request::Hello {
        min_version: 7,
        max_version: 9,
    };
    assert_eq!(
        raw_exchange(&conn, &frame(&bad)).await,
        Some(Response::Error(RelayError::UnsupportedVersion {
            min: 1,
            max: 1
        }))
    );
    assert_eq!(
        raw_exchange(&conn, &frame(&Request::hello())).await,
        Some(Response::Hello { version: 1 })
    );
}

#[tokio::test]
async fn oversized_prefix_and_garbage_do_not_disturb_another_client() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start(&dir.path().join("relay"), &[]).await;

    // An honest client with a live subscription, set up first.
    let honest = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = honest.create_mailbox(&recipient).await.unwrap();
    honest
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    let mut sub = honest
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();

    let (_endpoint, attacker) = raw_connect(&relay).await;
    assert_eq!(
        raw_exchange(&attacker, &frame(&Request::hello())).await,
        Some(Response::Hello { version: 1 })
    );
    // A 4 GiB length prefix: refused from the header alone.
    assert_eq!(
        raw_exchange(&attacker, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await,
        Some(Response::Error(RelayError::TooLarge))
    );
    // A well-framed but undecodable send.
    let mut truncated_send = vec![0, 0, 0, 65, 0x04];
    truncated_send.extend(std::iter::repeat_n(0xab, 64));
    assert_eq!(
        raw_exchange(&attacker, &truncated_send).await,
        Some(Response::Error(RelayError::Malformed))
    );
    // An unknown command.
    assert_eq!(
        raw_exchange(&attacker, &[0, 0, 0, 2, 0x3e, 0]).await,
        Some(Response::Error(RelayError::UnknownCommand))
    );
    // A stream that ends inside a frame.
    assert_eq!(
        raw_exchange(&attacker, &[0, 0, 0, 100, 1, 2]).await,
        Some(Response::Error(RelayError::Malformed))
    );
    // Random garbage: some typed error, and never a panic.
    for _ in 0..4 {
        let garbage: Vec<u8> = (0..4096).map(|_| rand::random::<u8>()).collect();
        if let Some(resp) = raw_exchange(&attacker, &garbage).await {
            assert!(matches!(resp, Response::Error(_)), "{resp:?}");
        }
    }
    // Past the malformed-stream limit the relay closes this connection.
    let closed = tokio::time::timeout(WAIT, attacker.closed()).await.unwrap();
    assert!(
        matches!(closed, quinn::ConnectionError::ApplicationClosed(_)),
        "{closed:?}"
    );

    // The honest client's round trip still works, on its old connection and
    // on a new one.
    let env = envelope(&sender, mb.send_id);
    let other = relay.connect().await;
    other.send(&env).await.unwrap();
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
    {
        SubscriptionEvent::Envelope(got) => assert_eq!(got, env),
        e => panic!("{e:?}"),
    }
    honest
        .ack(mb.receive_id, env.message_id(), &recipient)
        .await
        .unwrap();
    other.close().await;
    honest.close().await;
}

#[tokio::test]
async fn connections_per_ip_are_limited_and_slots_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let relay = start(
        &dir.path().join("relay"),
        &["--max-connections-per-ip", "2"],
    )
    .await;
    let a = relay.connect().await;
    let b = relay.connect().await;
    let refused = enlace_client::transport::RelayConnection::connect(&relay.address).await;
    assert!(
        matches!(
            refused,
            Err(enlace_client::transport::TransportError::Refused)
        ),
        "{refused:?}"
    );
    // Closing one frees its slot (the relay notices the close).
    a.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let c = loop {
        match enlace_client::transport::RelayConnection::connect(&relay.address).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    c.close().await;
    b.close().await;
}
