//! UDP forwarders on 127.0.0.1 between clients and a relay that lose what
//! the relay sends, so tests can see what it does when its packets (and
//! with them its answers) do not arrive. Each runs until the test's
//! runtime ends.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UdpSocket;

/// Largest UDP datagram.
const DATAGRAM: usize = 65536;

/// A forwarder to `relay` that drops one packet in `nth` from the relay to
/// a client (the first few, the handshake, pass), so the relay must
/// retransmit what it sent. Which ones is spread by a hash of the packet's
/// number, not a strict period: exactly every third packet locked in step
/// with quinn's retransmissions and starved a whole connection for 5 to
/// over 10 s in 3 of 12 runs. Returns the address to connect to.
pub async fn lossy(relay: SocketAddr, nth: u64) -> SocketAddr {
    let front = Arc::new(bind().await);
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        // One upstream socket per client address.
        let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; DATAGRAM];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let back = match backs.get(&client) {
                Some(b) => b.clone(),
                None => {
                    let b = Arc::new(bind().await);
                    b.connect(relay).await.unwrap();
                    let (b2, front2) = (b.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; DATAGRAM];
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
    addr
}

/// A forwarder between one client and `relay` that passes everything
/// until `cut` is set, then nothing from the relay to the client: the
/// client gets no answer and acknowledges nothing, while the relay still
/// gets its requests. Returns the address to connect to.
pub async fn one_way(relay: SocketAddr, cut: Arc<AtomicBool>) -> SocketAddr {
    let front = Arc::new(bind().await);
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let back = Arc::new(bind().await);
        back.connect(relay).await.unwrap();
        let mut buf = vec![0u8; DATAGRAM];
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let _ = back.send(&buf[..n]).await;
        let (back2, front2) = (back.clone(), front.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; DATAGRAM];
            while let Ok(n) = back2.recv(&mut buf).await {
                if !cut.load(Ordering::SeqCst) {
                    let _ = front2.send_to(&buf[..n], client).await;
                }
            }
        });
        while let Ok((n, _)) = front.recv_from(&mut buf).await {
            let _ = back.send(&buf[..n]).await;
        }
    });
    addr
}

async fn bind() -> UdpSocket {
    UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap()
}
