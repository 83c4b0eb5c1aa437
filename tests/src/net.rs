//! Raw QUIC to a relay: enlace-quic's pinned client configuration and
//! nothing else (no hello unless the test writes one), for tests that
//! speak bytes and frames directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use enlace_protocol::command::{BINDING_EXPORTER_LABEL, ConnectionBinding, Request, Response};
use enlace_protocol::delivery::DhKeyPair;
use enlace_protocol::keys::{Fingerprint, SigningKeyPair};
use enlace_quic::config::SERVER_NAME;

use crate::WAIT;
use crate::relay::Relay;

/// A client endpoint on `ip` (any port) whose connections use `config`.
pub fn endpoint_on(ip: IpAddr, config: quinn::ClientConfig) -> quinn::Endpoint {
    let mut endpoint = quinn::Endpoint::client(SocketAddr::new(ip, 0))
        .unwrap_or_else(|e| panic!("cannot bind a UDP socket on {ip}: {e}"));
    endpoint.set_default_client_config(config);
    endpoint
}

/// A client endpoint on 127.0.0.1 that pins `fingerprint`.
pub fn endpoint(fingerprint: Fingerprint) -> quinn::Endpoint {
    endpoint_on(
        Ipv4Addr::LOCALHOST.into(),
        enlace_quic::client_config(fingerprint).unwrap(),
    )
}

/// The QUIC and TLS handshake with `to`, nothing more.
pub async fn handshake(
    endpoint: &quinn::Endpoint,
    to: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    endpoint.connect(to, SERVER_NAME).unwrap().await
}

/// A raw connection to `relay`, past the handshake but not hello.
pub async fn raw_connect(relay: &Relay) -> (quinn::Endpoint, quinn::Connection) {
    let endpoint = endpoint(*relay.address().fingerprint());
    let conn = handshake(&endpoint, relay.socket_addr()).await.unwrap();
    (endpoint, conn)
}

/// The binding recipient commands on `conn` are signed for.
pub fn binding(conn: &quinn::Connection) -> ConnectionBinding {
    let mut binding = [0u8; 32];
    conn.export_keying_material(&mut binding, BINDING_EXPORTER_LABEL, b"")
        .unwrap();
    ConnectionBinding(binding)
}

/// `request` as a frame.
pub fn frame(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    enlace_protocol::frame::encode_frame(&request.to_bytes(), &mut out).unwrap();
    out
}

/// Writes raw bytes on a new stream and reads the first response frame
/// (`None` if the relay ended the stream without one). Silence for
/// [`WAIT`] fails the test.
pub async fn raw_exchange(conn: &quinn::Connection, bytes: &[u8]) -> Option<Response> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    // The relay may stop reading once it has seen enough: ignore errors.
    let _ = send.write_all(bytes).await;
    let _ = send.finish();
    match read_response(&mut recv).await {
        Read::Response(r) => Some(r),
        Read::Ended => None,
        Read::Silent => panic!("no answer and no end of stream within {WAIT:?}"),
    }
}

/// Reads up to `n` response frames from `recv`: fewer if the stream ends
/// first or nothing more comes within [`WAIT`].
pub async fn read_responses(recv: &mut quinn::RecvStream, n: usize) -> Vec<Response> {
    let mut out = Vec::new();
    for _ in 0..n {
        match read_response(recv).await {
            Read::Response(r) => out.push(r),
            Read::Ended | Read::Silent => break,
        }
    }
    out
}

/// Hello and a mailbox creation for `owner` on one new stream of `conn`,
/// and the (up to) two answers. A creation is a signature check that
/// passes: it proves the connection.
pub async fn hello_and_create_mailbox(
    conn: &quinn::Connection,
    owner: &SigningKeyPair,
) -> Vec<Response> {
    let dh = DhKeyPair::generate(&mut rand::rng());
    let mut bytes = frame(&Request::hello());
    bytes.extend_from_slice(&frame(&Request::create_mailbox(
        owner,
        *dh.public(),
        &binding(conn),
    )));
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&bytes).await.unwrap();
    send.finish().unwrap();
    read_responses(&mut recv, 2).await
}

/// How reading one response frame ended.
enum Read {
    Response(Response),
    /// The stream (or the connection) ended first.
    Ended,
    /// Nothing within [`WAIT`].
    Silent,
}

async fn read_response(recv: &mut quinn::RecvStream) -> Read {
    let mut header = [0u8; 4];
    match tokio::time::timeout(WAIT, recv.read_exact(&mut header)).await {
        Err(_) => return Read::Silent,
        Ok(Err(_)) => return Read::Ended,
        Ok(Ok(())) => {}
    }
    let mut payload = vec![0u8; enlace_protocol::frame::payload_len(header).unwrap()];
    match tokio::time::timeout(WAIT, recv.read_exact(&mut payload)).await {
        Err(_) => panic!("a response frame stopped half-way for {WAIT:?}"),
        Ok(Err(_)) => Read::Ended,
        Ok(Ok(())) => Read::Response(Response::decode(&payload).unwrap()),
    }
}
