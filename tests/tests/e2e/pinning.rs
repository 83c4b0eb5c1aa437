//! Clients accept only the relay whose key the address names.

use std::net::Ipv4Addr;
use std::sync::Arc;

use enlace_protocol::address::RelayAddress;
use enlace_quic::{RelayConnection, TransportError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use enlace_tests::mailbox::key;
use enlace_tests::net;
use enlace_tests::relay::Relay;

#[tokio::test]
async fn wrong_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"), &[]).await;
    let wrong = RelayAddress::new(
        key().public().relay_fingerprint(),
        "127.0.0.1",
        relay.address().port(),
    )
    .unwrap();
    assert!(matches!(
        RelayConnection::connect(&wrong).await,
        Err(TransportError::Untrusted)
    ));
    // The right one connects.
    relay.connect().await.close().await;
}

/// Serves the real relay's certificate but signs the handshake with another
/// ed25519 key.
#[derive(Debug)]
struct Impostor(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for Impostor {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

/// A QUIC server presenting `cert` and signing handshakes with `seed`.
fn server_with(cert: CertificateDer<'static>, seed: &[u8; 32]) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8(seed)));
    let signer = provider.key_provider.load_private_key(der).unwrap();
    let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![cert], signer));
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(certified)));
    tls.alpn_protocols = vec![enlace_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(crypto)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let accepting = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = accepting.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    conn.closed().await;
                }
            });
        }
    });
    server
}

/// Handshake only, with the pinned verifier.
async fn handshake(port: u16, pin: &RelayAddress) -> Result<(), quinn::ConnectionError> {
    let endpoint = net::endpoint(*pin.fingerprint());
    let conn = net::handshake(&endpoint, (Ipv4Addr::LOCALHOST, port).into()).await?;
    conn.close(0u32.into(), b"");
    Ok(())
}

#[tokio::test]
async fn impostor_with_the_real_certificate_but_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = Relay::start(&data, &[]).await;
    let cert = CertificateDer::from(std::fs::read(data.join("relay.crt")).unwrap());
    let real_seed: [u8; 32] = std::fs::read(data.join("relay.key"))
        .unwrap()
        .try_into()
        .unwrap();

    // Control: the same test server with the real key passes the pin, so
    // the refusal below is about the key alone.
    let genuine = server_with(cert.clone(), &real_seed);
    handshake(genuine.local_addr().unwrap().port(), relay.address())
        .await
        .unwrap();

    let impostor = server_with(cert, &key().secret_bytes());
    let port = impostor.local_addr().unwrap().port();
    assert!(handshake(port, relay.address()).await.is_err());
    let fake = RelayAddress::new(*relay.address().fingerprint(), "127.0.0.1", port).unwrap();
    assert!(matches!(
        RelayConnection::connect(&fake).await,
        Err(TransportError::Untrusted)
    ));
}
