//! Starting real relay processes and talking to them.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::BODY_SMALL;
use enlace_quic::RelayConnection;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Generous bound for anything that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `enlace-relay` binary cargo built next to this test executable.
pub fn relay_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("enlace-relay");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p enlace-relay` first)",
        bin.display()
    );
    bin
}

/// A running relay process.
pub struct Relay {
    pub child: Child,
    pub address: RelayAddress,
    /// The relay's standard error (its log at the default level).
    pub log: PathBuf,
    _stdout: BufReader<ChildStdout>,
}

/// Starts a relay on 127.0.0.1 with an ephemeral port, reading the address
/// line it prints. `ENLACE_E2E_RELAY_ARGS` adds arguments to every relay
/// (e.g. `--backend sled` to run the suite against the sled backend).
pub async fn start(data_dir: &Path, extra: &[&str]) -> Relay {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data_dir.with_extension("log"))
        .unwrap();
    let mut child = Command::new(relay_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .args(
            std::env::var("ENLACE_E2E_RELAY_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let read = tokio::time::timeout(WAIT, stdout.read_line(&mut line)).await;
    if !matches!(read, Ok(Ok(n)) if n > 0) {
        let log = std::fs::read_to_string(data_dir.with_extension("log")).unwrap_or_default();
        panic!("relay did not print its address; log:\n{log}");
    }
    let address: RelayAddress = line.trim().parse().unwrap();
    Relay {
        child,
        address,
        log: data_dir.with_extension("log"),
        _stdout: stdout,
    }
}

impl Relay {
    pub async fn connect(&self) -> RelayConnection {
        RelayConnection::connect(&self.address).await.unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait(mut self) -> ExitStatus {
        tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("relay did not exit")
            .unwrap()
    }

    /// kill -9 and reap.
    pub async fn kill9(mut self) {
        self.child.kill().await.unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

/// A signed small envelope with a random message id.
pub fn envelope(sender: &SigningKeyPair, send_id: MailboxId) -> Envelope {
    Envelope::sign(
        sender,
        send_id,
        MessageId(rand::random()),
        CoarseTime(500_000),
        &[0x5a; BODY_SMALL],
    )
    .unwrap()
}

pub fn key() -> SigningKeyPair {
    SigningKeyPair::generate(&mut rand::rng())
}

/// A free loopback TCP port for the metrics endpoint.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Fetches the metrics text.
pub async fn metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of one metric line.
pub fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A raw QUIC connection with the pinned verifier but no hello, for tests
/// that speak bytes directly.
pub async fn raw_connect(relay: &Relay) -> (quinn::Endpoint, quinn::Connection) {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(
        enlace_quic::client_config(*relay.address.fingerprint()).unwrap(),
    );
    let remote = format!("127.0.0.1:{}", relay.address.port())
        .parse()
        .unwrap();
    let conn = endpoint
        .connect(remote, "enlace-relay")
        .unwrap()
        .await
        .unwrap();
    (endpoint, conn)
}

/// Writes raw bytes on a new stream and reads the first response frame (or
/// `None` if the relay closed the stream without one).
pub async fn raw_exchange(
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Option<enlace_protocol::command::Response> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    // The relay may stop reading once it has seen enough: ignore errors.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    let mut header = [0u8; 4];
    tokio::time::timeout(WAIT, recv.read_exact(&mut header))
        .await
        .unwrap()
        .ok()?;
    let len = enlace_protocol::frame::payload_len(header).unwrap();
    let mut payload = vec![0u8; len];
    tokio::time::timeout(WAIT, recv.read_exact(&mut payload))
        .await
        .unwrap()
        .ok()?;
    Some(enlace_protocol::command::Response::decode(&payload).unwrap())
}

/// Encodes a request as a frame.
pub fn frame(request: &enlace_protocol::command::Request) -> Vec<u8> {
    let mut out = Vec::new();
    enlace_protocol::frame::encode_frame(&request.to_bytes(), &mut out).unwrap();
    out
}

/// A UDP forwarder on 127.0.0.1 between clients and `relay` that drops
/// one packet in `nth` from the relay to a client (the first few, the
/// handshake, pass), so the relay must retransmit what it sent. Which ones
/// is spread by a hash of the packet's number, not a strict period: exactly
/// every third packet locked in step with quinn's retransmissions and
/// starved a whole connection for 5 to over 10 s in 3 of 12 runs. Returns the
/// port to connect to; runs until the test's runtime ends.
pub async fn lossy_proxy(relay: std::net::SocketAddr, nth: u64) -> u16 {
    use std::collections::HashMap;
    use std::sync::Arc;
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let port = front.local_addr().unwrap().port();
    tokio::spawn(async move {
        // One upstream socket per client address.
        let mut backs: HashMap<std::net::SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let back = match backs.get(&client) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    b.connect(relay).await.unwrap();
                    let (b2, front2) = (b.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        let mut count = 0u64;
                        while let Ok(n) = b2.recv(&mut buf).await {
                            count += 1;
                            if count > 8
                                && (count.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40)
                                    .is_multiple_of(nth)
                            {
                                continue;
                            }
                            let _ = front2.send_to(&buf[..n], client).await;
                        }
                    });
                    backs.insert(client, b.clone());
                    b
                }
            };
            let _ = back.send(&buf[..n]).await;
        }
    });
    port
}
