//! What every task of the server shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::flight::InFlight;
use super::gate::PriorityGate;
use super::registry::Registry;
use crate::clock::Clock;
use crate::logic::Core;
use crate::metrics::Metrics;
use crate::policy::hosts::HostLimits;
use crate::relays::OtherRelays;
use crate::store::Store;
use crate::store::writer::Writer;

/// The server's state, shared by its connection and stream tasks.
pub(crate) struct Shared {
    pub(crate) core: Core<dyn Store>,
    pub(crate) writer: Writer,
    /// The forwarding half, for key fetches and forwards' answers.
    pub(crate) relays: Arc<dyn OtherRelays>,
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) clock: Clock,
    pub(crate) in_flight: InFlight,
    /// Stream tasks alive: each lives until the client has acknowledged
    /// everything it wrote, so closing after they end loses no answer.
    pub(crate) streams: Arc<InFlight>,
    /// Deposit answers (`Stored`) written on streams whose client has not
    /// yet acknowledged everything: what a close now could cut off.
    pub(crate) unacked: Arc<AtomicU64>,
    /// Deposit answers, since the relay started, on streams whose client
    /// left them unacknowledged for `FLUSH_GRACE` before shutdown began
    /// (their task gave up waiting; the connection still retransmits them
    /// while it lives).
    pub(crate) flushes_given_up: AtomicU64,
    pub(crate) draining: AtomicBool,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) per_ip: Mutex<HashMap<IpAddr, u32>>,
    pub(crate) hosts: Arc<HostLimits>,
    pub(crate) gate: PriorityGate,
    pub(crate) max_per_ip: u32,
    pub(crate) max_connections: u32,
}
