//! Dialing other relays: the destination policy checked on the resolved
//! address just before connecting, the cap on distinct destinations per
//! hour, the pinned outgoing connection (cached per full address, from the
//! relay's listening endpoint, so a destination sees this relay's address
//! and port, never a client's), and one request per stream over it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{Request, Response};
use enlace_quic::config::{SERVER_NAME, relay_dialer_config};
use enlace_quic::error::TransportError;
use enlace_quic::frame::exchange;

use super::peers::{Peers, Slot, address_key};
use crate::clock::Clock;
use crate::policy::destinations::{MAX_DESTINATIONS_PER_HOUR, RecentDestinations, refused};

/// How long connecting to another relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one relay-to-relay request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to another relay was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// It did not answer (or this relay is at its destination cap): try
    /// again later.
    Unreachable,
    /// The destination policy refuses the address: never tried.
    Refused,
}

/// Why a request to another relay got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("timed out")]
    Timeout,
    /// The stream or the connection failed.
    #[error(transparent)]
    Transport(TransportError),
}

/// How often the destination cap warning is logged at most.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Counts refusals so their warning is logged once a minute with a count,
/// not once per refused connect (review L-C).
#[derive(Debug, Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    count: u64,
}

impl RateLimitedWarning {
    /// Another refusal at `now`: the number of refusals to report if a
    /// warning is due, else `None`.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARNING_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// Dials other relays (see the module documentation).
pub(crate) struct Dialer {
    endpoint: quinn::Endpoint,
    clock: Clock,
    /// How long connecting may take ([`CONNECT_TIMEOUT`]; longer in tests).
    pub(crate) connect_timeout: Duration,
    /// Whether private, loopback and link-local destinations are allowed.
    allow_private: bool,
    /// This relay's own IPs, refused as destinations like private ones.
    own: Vec<IpAddr>,
    recent: Mutex<RecentDestinations>,
    cap_warning: Mutex<RateLimitedWarning>,
    /// Connections by full destination address (fingerprint, host and
    /// port), so a forward naming a wrong host never shares the real one's.
    peers: Mutex<Peers>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dialer {
    /// Dials from `endpoint`; `allow_private` and `own` are the
    /// destination policy ([`refused`]).
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        clock: Clock,
        allow_private: bool,
        own: Vec<IpAddr>,
    ) -> Self {
        Self {
            endpoint,
            clock,
            connect_timeout: CONNECT_TIMEOUT,
            allow_private,
            own,
            recent: Mutex::new(RecentDestinations::default()),
            cap_warning: Mutex::new(RateLimitedWarning::default()),
            peers: Mutex::new(Peers::default()),
        }
    }

    fn slot(&self, address: &RelayAddress) -> Slot {
        lock(&self.peers).slot(address_key(address))
    }

    /// Drops the cached connection to `address` (it failed).
    pub(crate) fn forget(&self, address: &RelayAddress) {
        lock(&self.peers).remove(&address_key(address));
    }

    /// The open connection to `destination`, connecting (and saying hello)
    /// if there is none.
    pub(crate) async fn connect(
        &self,
        destination: &RelayAddress,
    ) -> Result<quinn::Connection, ConnectError> {
        let slot = self.slot(destination);
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref()
            && conn.close_reason().is_none()
        {
            lock(&self.recent).touch(&address_key(destination), self.clock.instant());
            return Ok(conn.clone());
        }
        *cached = None;
        let unreachable = |what: &str| {
            tracing::debug!("relay {} unreachable: {what}", destination.fingerprint());
            ConnectError::Unreachable
        };
        let host = destination
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let remote: SocketAddr = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((host, destination.port())),
        )
        .await
        .map_err(|_| unreachable("name lookup timed out"))?
        .map_err(|_| unreachable("name lookup failed"))?
        .next()
        .ok_or_else(|| unreachable("no address"))?;
        if refused(self.allow_private, &self.own, remote.ip()) {
            tracing::debug!(
                "relay {} refused: its address is in a private range or this relay's own",
                destination.fingerprint()
            );
            return Err(ConnectError::Refused);
        }
        // Counted after the policy, so refused addresses use up no slot.
        if !lock(&self.recent).admit(&address_key(destination), self.clock.instant()) {
            if let Some(count) = lock(&self.cap_warning).refused(self.clock.instant()) {
                tracing::warn!(
                    "forwarding paused for {count} connects to new destinations: {MAX_DESTINATIONS_PER_HOUR} distinct destinations in the last hour"
                );
            }
            return Err(ConnectError::Unreachable);
        }
        let config = relay_dialer_config(*destination.fingerprint()).map_err(|e| {
            tracing::error!("relay client configuration: {e}");
            ConnectError::Unreachable
        })?;
        let connecting = self
            .endpoint
            .connect_with(config, remote, SERVER_NAME)
            .map_err(|e| unreachable(&e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| unreachable("connect timed out"))?
            .map_err(|e| unreachable(&e.to_string()))?;
        tracing::debug!(
            remote = %conn.remote_address(),
            "connected to relay {}",
            destination.fingerprint()
        );
        match self.request(&conn, &Request::hello()).await {
            Ok(Response::Hello { .. }) => {}
            _ => return Err(unreachable("no hello")),
        }
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// One request on a new stream, one response frame back.
    pub(crate) async fn request(
        &self,
        conn: &quinn::Connection,
        request: &Request,
    ) -> Result<Response, RequestError> {
        tokio::time::timeout(REQUEST_TIMEOUT, exchange(conn, request))
            .await
            .map_err(|_| RequestError::Timeout)?
            .map_err(RequestError::Transport)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_warning_is_logged_once_a_minute_with_a_count() {
        let now = Instant::now();
        let mut warning = RateLimitedWarning::default();
        assert_eq!(warning.refused(now), Some(1));
        for _ in 0..99 {
            assert_eq!(warning.refused(now + Duration::from_secs(30)), None);
        }
        assert_eq!(warning.refused(now + WARNING_INTERVAL), Some(100));
        assert_eq!(warning.refused(now + WARNING_INTERVAL), None);
    }
}
