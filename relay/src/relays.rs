//! What the server asks of relay-to-relay forwarding: another relay's key
//! for a client, and what became of a client's forward. The forwarding
//! half ([`crate::forward::Forwarder`]) implements it; the server holds it
//! as a trait object, so neither imports the other.

use std::future::Future;
use std::pin::Pin;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, Response};
use enlace_protocol::keys::Fingerprint;

use crate::store::StoreError;
use crate::store::forward::ForwardRecord;

/// A boxed future borrowing `'a`.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Other relays, as the server reaches them.
pub trait OtherRelays: Send + Sync {
    /// `destination`'s signed key bundle, checked, or the refusal to
    /// answer a client's `FetchRelayKey` with.
    fn fetch_key<'a>(&'a self, destination: &'a RelayAddress) -> Pending<'a, Response>;

    /// Once a client's forward is queued (committed): wakes the
    /// destination's worker, waits briefly for the destination's answer,
    /// then reads the forward's record again.
    fn await_forward(
        &self,
        forward_id: ForwardId,
        destination: Fingerprint,
    ) -> Pending<'_, Result<Option<ForwardRecord>, StoreError>>;
}
