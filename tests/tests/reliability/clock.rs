//! Clock skew: relay and client clocks hours apart, in both directions. No
//! envelope expires early (expiry uses the relay's own arrival time, never
//! the sender's timestamp), a re-sent envelope is stored once, and signed
//! recipient commands captured on one connection are refused on another.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use enlace_protocol::command::{RelayError, Request, Response};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{CoarseTime, Envelope, MessageId};
use enlace_protocol::limits::BODY_SMALL;
use enlace_tests::mailbox::{key, next_envelope, secured_mailbox};
use enlace_tests::net::{frame, raw_connect, raw_exchange};
use enlace_tests::relay::Relay;

const HOUR: i64 = 3600;

#[tokio::test(flavor = "multi_thread")]
async fn hours_of_skew_either_way_neither_expire_early_nor_accept_replays() {
    let now_hours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600;
    // (relay offset at deposit, relay offset at delivery, client clock offset)
    let cases: [(i64, i64, i64); 4] = [
        (-12 * HOUR, 12 * HOUR, 0),
        (12 * HOUR, -12 * HOUR, 0),
        (0, 0, 30 * 24 * HOUR),  // client a month ahead of the relay
        (0, 0, -30 * 24 * HOUR), // client a month behind
    ];
    for (deposit_offset, deliver_offset, client_offset) in cases {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");
        let offset = deposit_offset.to_string();
        let mut relay = Relay::start(&data, &["--clock-offset-secs", &offset]).await;
        let conn = relay.connect().await;
        let sender = key();
        let (recipient, mb) = secured_mailbox(&conn, &sender).await;
        let client_hours = (now_hours as i64 + client_offset / HOUR) as u32;
        let env = Envelope::sign(
            &sender,
            mb.send_id,
            MessageId(rand::random()),
            CoarseTime(client_hours),
            &[0x5a; BODY_SMALL],
        )
        .unwrap();
        conn.send(&env).await.unwrap();
        // A signed ack captured on this connection.
        let captured_ack =
            Request::ack(mb.receive_id, env.message_id(), &recipient, conn.binding());
        conn.close().await;
        relay.stop().await;

        let offset = deliver_offset.to_string();
        let mut relay = Relay::start(
            &data,
            &["--clock-offset-secs", &offset, "--sweep-interval-secs", "1"],
        )
        .await;
        // Let the expiry sweep run a few times at the new clock.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let conn = relay.connect().await;
        // The same envelope again (a replay, or a client retry): answered,
        // stored once.
        conn.send(&env).await.unwrap();
        // The captured ack replayed on another connection: refused, and the
        // envelope is still there.
        let (_endpoint, raw) = raw_connect(&relay).await;
        assert_eq!(
            raw_exchange(&raw, &frame(&Request::hello())).await,
            Some(Response::Hello { version: 1 })
        );
        assert_eq!(
            raw_exchange(&raw, &frame(&captured_ack)).await,
            Some(Response::Error(RelayError::Auth)),
            "a captured ack was accepted on another connection"
        );
        let mut sub = conn
            .subscribe(
                mb.receive_id,
                &recipient,
                DeliveryKey::from_bytes(*mb.delivery_key.to_bytes()),
            )
            .await
            .unwrap();
        assert_eq!(next_envelope(&mut sub).await, env);
        // Exactly once: nothing else arrives.
        assert!(
            tokio::time::timeout(Duration::from_secs(2), sub.next())
                .await
                .is_err(),
            "the re-sent envelope was stored twice (skew {deposit_offset}/{deliver_offset}/{client_offset})"
        );
        sub.ack(env.message_id(), &recipient).await.unwrap();
        conn.close().await;
        relay.stop().await;
    }
    println!(
        "CLOCK: relay -12h/+12h and +12h/-12h across a restart, client +-30 days: delivered once, no early expiry, captured ack refused on another connection"
    );
}
