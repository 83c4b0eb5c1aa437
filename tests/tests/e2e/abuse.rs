//! Bad input on one connection does not disturb anyone else.

use std::net::Ipv4Addr;

use enlace_protocol::command::{ConnectionBinding, RelayError, Request, Response};
use enlace_quic::SubscriptionEvent;
use enlace_tests::WAIT;
use enlace_tests::mailbox::{envelope, key, large_envelope, secured_mailbox};
use enlace_tests::measure::rss_kib;
use enlace_tests::net::{self, frame, raw_connect, raw_exchange};
use enlace_tests::relay::Relay;

#[tokio::test]
async fn requests_before_hello_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
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
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;

    // An honest client with a live subscription, set up first.
    let honest = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&honest, &sender).await;
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
    let relay = Relay::start(
        &dir.path().join("relay"),
        &["--max-connections-per-ip", "2"],
    )
    .await;
    let a = relay.connect().await;
    let b = relay.connect().await;
    let refused = enlace_quic::RelayConnection::connect(relay.address()).await;
    assert!(
        matches!(refused, Err(enlace_quic::TransportError::Refused)),
        "{refused:?}"
    );
    // Closing one frees its slot (the relay notices the close).
    a.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let c = loop {
        match enlace_quic::RelayConnection::connect(relay.address()).await {
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

#[tokio::test]
async fn subscribers_that_never_read_do_not_make_the_relay_buffer_their_mailbox() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    // A full mailbox of the largest envelopes (8 MiB).
    for _ in 0..128 {
        conn.send(&large_envelope(&sender, mb.send_id))
            .await
            .unwrap();
    }
    conn.close().await;
    let before = rss_kib(relay.pid()).0;

    // Subscribe on every stream of a few connections and never read: each
    // subscription takes over the last, and each stream's writes block.
    let mut held = Vec::new();
    let mut conns = Vec::new();
    // A client that lets each stream take only a sliver (so the relay's
    // first write on it blocks) but the connection as a whole a lot.
    let mut config = enlace_quic::client_config(*relay.address().fingerprint()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(1024))
        .receive_window(quinn::VarInt::from_u32(64 << 20))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    config.transport_config(std::sync::Arc::new(transport));
    for _ in 0..4 {
        let endpoint = net::endpoint_on(Ipv4Addr::LOCALHOST.into(), config.clone());
        let raw = net::handshake(&endpoint, relay.socket_addr())
            .await
            .unwrap();
        assert!(matches!(
            raw_exchange(&raw, &frame(&Request::hello())).await,
            Some(Response::Hello { .. })
        ));
        let binding = net::binding(&raw);
        // Every stream the relay allows beside the hello's.
        for _ in 1..enlace_relay::server::MAX_STREAMS {
            let (mut send, recv) = raw.open_bi().await.unwrap();
            let sub = Request::subscribe(mb.receive_id, &recipient, &binding);
            send.write_all(&frame(&sub)).await.unwrap();
            held.push((send, recv));
        }
        conns.push((endpoint, raw));
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let grown_mib = rss_kib(relay.pid()).0.saturating_sub(before) / 1024;
    // 4 x (MAX_STREAMS - 1) stuck subscriptions; each may hold one
    // envelope and quinn's send buffer is 1 MiB per connection.
    assert!(grown_mib < 48, "relay grew by {grown_mib} MiB");
    drop((held, conns));
}

#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_delay_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    for _ in 0..4 {
        conn.send(&large_envelope(&sender, mb.send_id))
            .await
            .unwrap();
    }
    conn.close().await;

    // A stream window of 1 KiB: the relay's first delivery blocks.
    let mut config = enlace_quic::client_config(*relay.address().fingerprint()).unwrap();
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(quinn::VarInt::from_u32(1024))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    config.transport_config(std::sync::Arc::new(transport));
    let endpoint = net::endpoint_on(Ipv4Addr::LOCALHOST.into(), config);
    let raw = net::handshake(&endpoint, relay.socket_addr())
        .await
        .unwrap();
    assert!(matches!(
        raw_exchange(&raw, &frame(&Request::hello())).await,
        Some(Response::Hello { .. })
    ));
    let (mut send, _recv) = raw.open_bi().await.unwrap();
    let sub = Request::subscribe(mb.receive_id, &recipient, &net::binding(&raw));
    send.write_all(&frame(&sub)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let started = std::time::Instant::now();
    relay.stop().await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(4),
        "shutdown took {took:?}"
    );
}
