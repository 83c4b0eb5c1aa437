//! One request in, one [`Step`] out: nothing is served before the version
//! is agreed (docs/protocol.md 7.2), then each command goes to its file.

use enlace_protocol::PROTOCOL_VERSION;
use enlace_protocol::command::{RelayError, Request, Response, negotiate_version};

use super::conn::ConnState;
use super::core::Core;
use super::forward::{fetch_relay_key, forward, forward_status};
use super::mailbox::{ack, create, delete, secure, subscribe};
use super::send::{relay_deliver, send};
use super::step::Step;
use crate::store::Store;

impl<S: Store + ?Sized> Core<S> {
    /// Decides what to do with one request on connection `conn` at `now`
    /// (Unix seconds from the relay's clock).
    pub fn handle(&self, conn: &ConnState, request: Request, now: u64) -> Step {
        if let Request::Hello {
            min_version,
            max_version,
        } = request
        {
            return match negotiate_version(min_version, max_version) {
                Ok(version) => {
                    conn.said_hello();
                    Step::Reply(Response::Hello { version })
                }
                Err(e) => Step::Reply(Response::Error(e)),
            };
        }
        if !conn.hello_done() {
            // Nothing is served before the version is agreed.
            return Step::Reply(Response::Error(RelayError::Malformed));
        }
        command(self, conn, request, now).unwrap_or_else(|e| Step::Reply(Response::Error(e)))
    }
}

fn command<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    request: Request,
    now: u64,
) -> Result<Step, RelayError> {
    match request {
        Request::CreateMailbox(signed) => create(conn, &signed, now),
        Request::Secure(signed) => secure(core, conn, &signed),
        Request::Send(envelope) => send(core, conn, envelope, now, false),
        Request::Subscribe(signed) => subscribe(core, conn, &signed),
        Request::Ack(signed) => ack(core, conn, &signed),
        Request::Delete(signed) => delete(core, conn, &signed),
        Request::Hello { .. } => Ok(Step::Reply(Response::Hello {
            version: PROTOCOL_VERSION,
        })),
        Request::FetchRelayKey { destination } => fetch_relay_key(core, conn, destination, now),
        Request::Forward(f) => forward(core, conn, f, now),
        Request::RelayDeliver { sealed } => relay_deliver(core, conn, &sealed, now),
        Request::ForwardStatus { ids } => forward_status(core, conn, &ids),
        _ => Err(RelayError::UnknownCommand),
    }
}
