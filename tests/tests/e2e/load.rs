//! A quick load run: durable deposits per second (each answered after
//! fsync) from 50 concurrent senders, and the relay's RSS idle and with
//! 1,000 idle connections. Run with
//! `cargo test --release -p enlace-tests --test e2e -- --ignored --nocapture load`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enlace_protocol::command::{Request, Response};

use enlace_tests::env_or;
use enlace_tests::mailbox::{envelope, key, secured_mailbox};
use enlace_tests::measure::{cpu_secs, rss_kib};
use enlace_tests::net::{self, frame, raw_exchange};
use enlace_tests::relay::Relay;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load run that prints figures; takes about 20 s"]
async fn load_durable_deposits_and_idle_rss() {
    let senders = env_or("LOAD_SENDERS", 50) as usize;
    let secs = env_or("LOAD_SECS", 5);
    let dir = tempfile::tempdir_in(std::env::var("LOAD_DIR").unwrap_or("/tmp".into())).unwrap();
    let relay = Relay::start(
        &dir.path().join("relay"),
        &["--quota", "1000000", "--max-connections-per-ip", "5000"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = rss_kib(relay.pid()).0;

    // 1,000 idle connections from one client endpoint, each past hello.
    let endpoint = net::endpoint(*relay.address().fingerprint());
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let conn = net::handshake(&endpoint, relay.socket_addr())
            .await
            .unwrap();
        assert_eq!(
            raw_exchange(&conn, &frame(&Request::hello())).await,
            Some(Response::Hello { version: 1 })
        );
        idle.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_1000 = rss_kib(relay.pid()).0;
    for c in &idle {
        c.close(0u32.into(), b"");
    }
    endpoint.wait_idle().await;

    let count = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..senders {
        let conn = relay.connect().await;
        let sender = key();
        let (_, mb) = secured_mailbox(&conn, &sender).await;
        conns.push((conn, sender, mb.send_id));
    }
    let cpu_before = cpu_secs(relay.pid());
    let start_at = Instant::now();
    let deadline = start_at + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (conn, sender, send_id) in conns {
        let count = count.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                conn.send(&envelope(&sender, send_id)).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
            }
            conn.close().await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start_at.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed);
    let rss_after_load = rss_kib(relay.pid()).0;
    let relay_cpu = cpu_secs(relay.pid()) - cpu_before;

    println!(
        "LOAD: {senders} senders, {n} durable deposits in {elapsed:.1} s = {:.0} envelopes/s (2 KiB bodies, stored answered after fsync)",
        n as f64 / elapsed
    );
    println!(
        "CPU: the relay used {relay_cpu:.1} CPU-seconds during the run ({:.0} µs per deposit)",
        relay_cpu * 1e6 / n as f64
    );
    println!(
        "RSS: idle {rss_idle} KiB, with 1000 idle connections {rss_1000} KiB, after the load run {rss_after_load} KiB"
    );
}
