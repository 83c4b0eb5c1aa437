//! TLS and QUIC configurations: a client's, a relay's when it dials
//! another relay, and a relay's server side.
//!
//! TLS 1.3 only, the ring provider named explicitly (a second provider in
//! the graph makes rustls's implicit choice panic), no early data, no
//! session tickets: a ticket would let the relay, or anyone who sees it,
//! link a client's connections.

use std::sync::Arc;
use std::time::Duration;

use enlace_protocol::ALPN;
use enlace_protocol::keys::Fingerprint;
use quinn::VarInt;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pin::PinnedRelayVerifier;

/// The TLS server name a dialer sends. It is not checked (the key is
/// pinned) and names no relay.
pub const SERVER_NAME: &str = "enlace-relay";

/// Keep-alive interval of outgoing connections: below a relay's idle
/// timeout, so a quiet subscription or a cached relay link stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Why a configuration or an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// rustls refused the settings or the certificate and key.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The TLS configuration has no cipher suite QUIC can start with.
    #[error("QUIC configuration: {0}")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    /// The idle timeout is out of QUIC's range.
    #[error("idle timeout out of range: {0}")]
    IdleTimeout(#[from] quinn::VarIntBoundsExceeded),
    /// The UDP socket could not be opened.
    #[error("cannot open a UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    /// quinn refused to start the connection (for example, a bad address).
    #[error("cannot start the connection: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The TLS exporter the connection binding comes from is unavailable.
    #[error("TLS exporter unavailable")]
    Exporter,
}

/// Flow-control windows of an outgoing connection.
struct DialWindows {
    connection: u32,
    stream: u32,
}

/// A client receives whole mailboxes of deliveries.
const CLIENT_WINDOWS: DialWindows = DialWindows {
    connection: 4 * 1024 * 1024,
    stream: 2 * 1024 * 1024,
};

/// A relay dialing another relay receives only short answers.
const RELAY_DIALER_WINDOWS: DialWindows = DialWindows {
    connection: 1024 * 1024,
    stream: 256 * 1024,
};

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn dialer_config(
    pinned: Fingerprint,
    windows: &DialWindows,
) -> Result<quinn::ClientConfig, SetupError> {
    let provider = ring();
    let verifier = Arc::new(PinnedRelayVerifier::new(pinned, &provider));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_concurrent_bidi_streams(VarInt::from_u32(0))
        .receive_window(VarInt::from_u32(windows.connection))
        .stream_receive_window(VarInt::from_u32(windows.stream));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The QUIC configuration of a client connecting to the relay whose key
/// has fingerprint `pinned`.
pub fn client_config(pinned: Fingerprint) -> Result<quinn::ClientConfig, SetupError> {
    dialer_config(pinned, &CLIENT_WINDOWS)
}

/// The QUIC configuration of a relay forwarding to the relay whose key has
/// fingerprint `pinned` (smaller windows: it reads only answers).
pub fn relay_dialer_config(pinned: Fingerprint) -> Result<quinn::ClientConfig, SetupError> {
    dialer_config(pinned, &RELAY_DIALER_WINDOWS)
}

/// A relay's transport limits for the connections it accepts.
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    /// Bidirectional streams a connection may have open at once.
    pub max_streams: u32,
    /// Bytes a stream may have in flight towards the relay.
    pub stream_receive_window: u32,
    /// Bytes a connection may have in flight towards the relay at first
    /// (the relay may raise it per connection later).
    pub receive_window: u32,
    /// Bytes the relay keeps in flight towards one connection.
    pub send_window: u64,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

/// The rustls and quinn server configuration of a relay presenting `cert`
/// (which carries the public half of `key`).
pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    limits: &ServerLimits,
) -> Result<quinn::ServerConfig, SetupError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(ring())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No session resumption: a ticket would let the relay (or anyone who
    // sees it) link a client's connections, and the stateful cache rustls
    // keeps for tickets is memory per handshake for nothing (no 0-RTT).
    tls.send_tls13_tickets = 0;
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(limits.stream_receive_window))
        .receive_window(VarInt::from_u32(limits.receive_window))
        .send_window(limits.send_window)
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(Some(quinn::IdleTimeout::try_from(limits.idle_timeout)?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
