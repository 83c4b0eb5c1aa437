//! An attacker spread over many loopback source addresses. A real attacker
//! has many addresses, and the relay's per-host budgets (connections,
//! failed signature checks, new-connection rate) stop a one-address
//! attacker early; the hostile tests use this to keep sending.
//!
//! Each new attacker connection takes the next address (127.1.x.y), through
//! one QUIC endpoint bound to that address: `N` UDP sockets in all, made at
//! the start and closed at the end. An address whose connection attempt
//! failed (refused, timed out) backs off (100 ms doubling to 5 s) and the
//! attacker moves on to the next one; when every address is backing off it
//! waits for the first to come free, so a refusing relay never sees a tight
//! retry loop. Every connect error and every way the relay closed an
//! attacker connection is counted, so the figures show what the defences
//! did.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use enlace_quic::config::SERVER_NAME;
use enlace_tests::env_or;

/// First backoff of an address whose connection attempt failed.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest backoff of one address (doubling from `BACKOFF_MIN`).
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most source addresses (127.1.0.1 to 127.1.255.254, skipping .0 and .255).
pub const MAX_ADDRESSES: usize = 254 * 256;

/// The number of attacker source addresses: `ENLACE_ATTACKER_IPS`, or
/// `default` (64 for the hostile-frames CI form, 16 for the flood's, 1 for
/// hostile forwarding's,
/// 4,096 for the 10^6-frame long form, 256 for the other long forms).
pub fn addresses_wanted(default: usize) -> usize {
    (env_or("ENLACE_ATTACKER_IPS", default as u64) as usize).clamp(1, MAX_ADDRESSES)
}

/// The `i`-th attacker source address: 127.1.0.1, 127.1.0.2, …
pub fn source_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 254) as u8, (i % 254 + 1) as u8))
}

#[derive(Debug, Default)]
struct Backoff {
    until: Option<Instant>,
    current: Duration,
}

/// The attacker's endpoints, one per source address, and what it saw.
#[derive(Debug)]
pub struct Attacker {
    endpoints: Vec<quinn::Endpoint>,
    backoff: Mutex<Vec<Backoff>>,
    next: AtomicUsize,
    pub attempts: AtomicU64,
    pub established: AtomicU64,
    /// Connection attempts that failed, by how.
    refused: Mutex<BTreeMap<String, u64>>,
    /// Established connections that the relay (or the network) ended, by
    /// how; connections the attacker closed itself are not counted here.
    closed: Mutex<BTreeMap<String, u64>>,
    /// Times an address was put on backoff.
    pub backoffs: AtomicU64,
}

impl Attacker {
    /// `n` endpoints, made on the attacker's runtime (quinn drives an
    /// endpoint on the runtime it was made in).
    pub fn new(n: usize, runtime: &tokio::runtime::Handle) -> Self {
        let _guard = runtime.enter();
        let endpoints = (0..n)
            .map(|i| {
                quinn::Endpoint::client(SocketAddr::new(source_address(i), 0))
                    .unwrap_or_else(|e| panic!("cannot bind {}: {e}", source_address(i)))
            })
            .collect();
        Self {
            endpoints,
            backoff: Mutex::new((0..n).map(|_| Backoff::default()).collect()),
            next: AtomicUsize::new(0),
            attempts: AtomicU64::default(),
            established: AtomicU64::default(),
            refused: Mutex::default(),
            closed: Mutex::default(),
            backoffs: AtomicU64::default(),
        }
    }

    pub fn addresses(&self) -> usize {
        self.endpoints.len()
    }

    /// The addresses in words, for the printed figures.
    pub fn describe(&self) -> String {
        let n = self.addresses();
        if n == 1 {
            format!("1 source address ({})", source_address(0))
        } else {
            format!(
                "{n} source addresses ({} to {})",
                source_address(0),
                source_address(n - 1)
            )
        }
    }

    /// The next address not backing off (waiting for the first to come
    /// free if all are).
    async fn pick(&self) -> usize {
        let n = self.addresses();
        loop {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let wait = {
                let now = Instant::now();
                let backoff = self.backoff.lock().unwrap();
                let free = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&i| backoff[i].until.is_none_or(|u| u <= now));
                if let Some(i) = free {
                    return i;
                }
                backoff
                    .iter()
                    .filter_map(|b| b.until)
                    .min()
                    .map_or(BACKOFF_MIN, |u| u.saturating_duration_since(now))
            };
            tokio::time::sleep(wait.clamp(Duration::from_millis(1), BACKOFF_MAX)).await;
        }
    }

    /// A new connection to `to` from the next source address, or `None`
    /// (counted, and that address backs off).
    pub async fn connect(
        &self,
        to: SocketAddr,
        config: &quinn::ClientConfig,
    ) -> Option<quinn::Connection> {
        let i = self.pick().await;
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let result = match self.endpoints[i].connect_with(config.clone(), to, SERVER_NAME) {
            Err(e) => Err(format!("connect error: {e}")),
            Ok(connecting) => match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Err(_) => Err("handshake timed out (10 s)".to_string()),
                Ok(Err(e)) => Err(describe_error(&e)),
                Ok(Ok(conn)) => Ok(conn),
            },
        };
        let mut backoff = self.backoff.lock().unwrap();
        let b = &mut backoff[i];
        match result {
            Ok(conn) => {
                self.established.fetch_add(1, Ordering::Relaxed);
                *b = Backoff::default();
                Some(conn)
            }
            Err(what) => {
                *self.refused.lock().unwrap().entry(what).or_default() += 1;
                b.current = (b.current * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                b.until = Some(Instant::now() + b.current);
                self.backoffs.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Counts how `conn` ended if the relay (or the network) ended it, then
    /// closes it. Call when done with a connection.
    pub fn finish(&self, conn: &quinn::Connection) {
        match conn.close_reason() {
            None | Some(quinn::ConnectionError::LocallyClosed) => {}
            Some(e) => {
                *self
                    .closed
                    .lock()
                    .unwrap()
                    .entry(describe_error(&e))
                    .or_default() += 1
            }
        }
        conn.close(0u32.into(), b"");
    }

    /// What the defences did, for the printed figures.
    pub fn report(&self) -> String {
        let list = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let refused = self.refused.lock().unwrap();
        format!(
            "{}; {} connection attempts, {} established, {} failed ({}), {} address backoffs; closed by the relay: {}",
            self.describe(),
            self.attempts.load(Ordering::Relaxed),
            self.established.load(Ordering::Relaxed),
            refused.values().sum::<u64>(),
            list(&refused),
            self.backoffs.load(Ordering::Relaxed),
            list(&self.closed.lock().unwrap()),
        )
    }

    /// Closes every endpoint and waits (at most 5 s) until they are idle.
    pub async fn close(&self) {
        for e in &self.endpoints {
            e.close(0u32.into(), b"");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            for e in &self.endpoints {
                e.wait_idle().await;
            }
        })
        .await;
    }
}

/// A connection error in words, with the relay's application codes named
/// (docs/protocol.md section 7).
fn describe_error(e: &quinn::ConnectionError) -> String {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let name = match c.error_code.into_inner() {
                0 => "shutdown",
                1 => "too many malformed streams",
                2 => "stream malformed",
                3 => "too many failed signature checks",
                _ => "unknown",
            };
            format!("code {} ({name})", c.error_code)
        }
        quinn::ConnectionError::ConnectionClosed(c) => format!("{:?}", c.error_code),
        quinn::ConnectionError::TimedOut => "idle timeout".into(),
        quinn::ConnectionError::Reset => "reset".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use enlace_tests::WAIT;
    use enlace_tests::relay::Relay;

    use super::*;

    /// A relay that takes 2 connections per address: the attacker's fifth
    /// connection from 2 addresses is refused, the address backs off, the
    /// next address is tried, and when both are backing off the attacker
    /// waits instead of spinning.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_refused_address_backs_off_and_the_attacker_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut relay = Relay::start(
            &dir.path().join("relay"),
            &["--max-connections-per-ip", "2"],
        )
        .await;
        let to = relay.socket_addr();
        let config = enlace_quic::client_config(*relay.address().fingerprint()).unwrap();
        let attacker = Attacker::new(2, &tokio::runtime::Handle::current());
        let mut held = Vec::new();
        // Four connections at 2 per address: both addresses were used.
        for _ in 0..4 {
            held.push(attacker.connect(to, &config).await.expect("a free slot"));
        }
        // Both addresses are full: each is refused once and backs off.
        assert!(attacker.connect(to, &config).await.is_none());
        assert!(attacker.connect(to, &config).await.is_none());
        assert_eq!(attacker.backoffs.load(Ordering::Relaxed), 2);
        // Both back off: the next attempt waits for the first to come free.
        let t = Instant::now();
        assert!(attacker.connect(to, &config).await.is_none());
        assert!(
            t.elapsed() >= BACKOFF_MIN / 2,
            "retried a refusing address after {:?}",
            t.elapsed()
        );
        let report = attacker.report();
        assert!(
            report.contains("3 failed (3 CONNECTION_REFUSED)"),
            "{report}"
        );
        // A slot frees: that address connects again.
        let freed = held.pop().unwrap();
        freed.close(0u32.into(), b"");
        let until = Instant::now() + WAIT;
        let again = loop {
            if let Some(c) = attacker.connect(to, &config).await {
                break c;
            }
            assert!(Instant::now() < until, "no slot came free");
        };
        held.push(again);
        for c in &held {
            attacker.finish(c);
        }
        attacker.close().await;
        relay.assert_alive();
        relay.stop().await;
    }

    #[test]
    fn source_addresses_skip_zero_and_broadcast_octets() {
        assert_eq!(source_address(0).to_string(), "127.1.0.1");
        assert_eq!(source_address(253).to_string(), "127.1.0.254");
        assert_eq!(source_address(254).to_string(), "127.1.1.1");
        assert_eq!(
            source_address(MAX_ADDRESSES - 1).to_string(),
            "127.1.255.254"
        );
    }
}
