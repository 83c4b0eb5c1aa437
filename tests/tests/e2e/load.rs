//! A quick load run: durable deposits per second (each answered after
//! fsync) from 50 concurrent senders, and the relay's RSS idle and with
//! 1,000 idle connections. Run with
//! `cargo test --release -p enlace-tests --test e2e -- --ignored --nocapture load`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use enlace_protocol::command::{Request, Response};

use crate::support::{envelope, frame, key, raw_exchange, start};

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields overall, in clock ticks (100 per second on Linux).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "load run that prints figures; takes about 20 s"]
async fn load_durable_deposits_and_idle_rss() {
    let senders: usize = std::env::var("LOAD_SENDERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir_in(std::env::var("LOAD_DIR").unwrap_or("/tmp".into())).unwrap();
    let relay = start(
        &dir.path().join("relay"),
        &["--quota", "1000000", "--max-connections-per-ip", "5000"],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = vm_rss_kib(relay.pid());

    // 1,000 idle connections from one client endpoint, each past hello.
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(
        enlace_quic::client_config(*relay.address.fingerprint()).unwrap(),
    );
    let remote = format!("127.0.0.1:{}", relay.address.port())
        .parse()
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let conn = endpoint
            .connect(remote, "enlace-relay")
            .unwrap()
            .await
            .unwrap();
        assert_eq!(
            raw_exchange(&conn, &frame(&Request::hello())).await,
            Some(Response::Hello { version: 1 })
        );
        idle.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_1000 = vm_rss_kib(relay.pid());
    for c in &idle {
        c.close(0u32.into(), b"");
    }
    endpoint.wait_idle().await;

    let count = Arc::new(AtomicU64::new(0));
    let mut conns = Vec::new();
    for _ in 0..senders {
        let conn = relay.connect().await;
        let (recipient, sender) = (key(), key());
        let mb = conn.create_mailbox(&recipient).await.unwrap();
        conn.secure(mb.receive_id, *sender.public(), &recipient)
            .await
            .unwrap();
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
    let rss_after_load = vm_rss_kib(relay.pid());
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
