//! One client connection: its binding (docs/protocol.md 7.1), its state,
//! and a task per stream it opens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use enlace_protocol::command::{BINDING_EXPORTER_LABEL, ConnectionBinding};
use enlace_quic::frame::FrameStream;

use super::flight::OwnedInFlightGuard;
use super::shared::Shared;
use super::stream::StreamTask;
use super::transport::codes;
use crate::logic::ConnState;
use crate::policy::hosts::limit_key;

/// Serves one connection: derives its binding, then spawns a task per
/// stream it opens.
pub(crate) async fn serve_connection(shared: Arc<Shared>, conn: quinn::Connection) {
    tracing::debug!(remote = %conn.remote_address(), "connection open");
    let mut binding = [0u8; 32];
    if conn
        .export_keying_material(&mut binding, BINDING_EXPORTER_LABEL, b"")
        .is_err()
    {
        conn.close(codes::PROTOCOL_VIOLATION, b"no exporter");
        return;
    }
    let state = Arc::new(ConnState::with_host(
        ConnectionBinding(binding),
        shared.clock.now(),
        shared.hosts.clone(),
        limit_key(conn.remote_address().ip()),
    ));
    let malformed = Arc::new(AtomicU64::new(0));
    let window_raised = Arc::new(AtomicBool::new(false));
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("connection closed: {e}");
                return;
            }
        };
        let alive = OwnedInFlightGuard::enter(&shared.streams);
        let stream = StreamTask {
            shared: shared.clone(),
            state: state.clone(),
            conn: conn.clone(),
            malformed: malformed.clone(),
            window_raised: window_raised.clone(),
            turn: turn.clone(),
            send,
            frames: FrameStream::new(recv),
            abandoned: false,
            answered: false,
            deposits_answered: 0,
        };
        tokio::spawn(async move {
            let _alive = alive;
            stream.run().await;
        });
    }
}
