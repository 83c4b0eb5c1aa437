//! The QUIC driver: reads a frame, calls the core, writes the answer
//! (docs/protocol.md section 7).
//!
//! Files, from the top: [`serve`] (the accept loop and the shutdown
//! drain), `admission` (slots and rates for new connections),
//! `connection` (one connection), `stream` (one stream: requests,
//! commits and their effects, subscriptions), `registry` (who holds each
//! mailbox's subscription), `gate` and `background` (the priority
//! lanes), `sweep`, `flight` (what shutdown waits for), `shared` and
//! [`transport`] (QUIC limits, codes, configuration).
//!
//! The server does not import the forwarding half: it reaches other
//! relays through [`crate::relays::OtherRelays`].

pub(crate) mod admission;
pub(crate) mod background;
pub(crate) mod connection;
pub(crate) mod flight;
pub(crate) mod gate;
pub(crate) mod registry;
pub mod serve;
pub(crate) mod shared;
pub(crate) mod stream;
pub(crate) mod sweep;
pub mod transport;

pub use self::background::BACKGROUND_NICE;
pub use self::gate::UNPROVEN_PERMITS;
pub use self::serve::{Parts, Server};
pub use self::stream::DELIVERY_WINDOW;
pub use self::transport::{
    CONNECTION_RECEIVE_WINDOW, MAX_MALFORMED_STREAMS, MAX_STREAMS, SEND_WINDOW,
    STREAM_RECEIVE_WINDOW, UNPROVEN_RECEIVE_WINDOW, codes, server_config,
};
