//! Reading the models of earlier store formats: the postcard shape of the
//! profile as formats 1 and 2 wrote it, and the conversion to today's
//! (`super::legacy` reads those formats' file).
//!
//! Format 2 kept nuclei as (id, name, pinned creator, version-1
//! operations, Lamport clock, seen, received); format 3 keeps those
//! operations as version 1, beside the version-2 ones, adds the
//! nucleus's pins, invitation, setting and notices, and appends the
//! disappearing-message timers to the profile. A format 1 profile is
//! format 2 without the last three fields ([`FORMAT_1_TAIL`]).

use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::contact::{Contact, Invitation};
use super::ids::EnvelopeId;
use super::messages::{HistoryEntry, OutboxEntry, PartialMessage, SentMessage};
use super::model::Profile;
use super::nucleus::{IntroducedContact, Nucleus, NucleusTask, SeenGroupMessage};
use super::relay::StoredRelay;
use crate::error::Error;

/// The postcard encoding of the fields [`Profile`] gained in store format
/// 2, all empty: appended to a format 1 profile to read it as format 2.
pub(crate) const FORMAT_1_TAIL: [u8; 3] = [0, 0, 0];

/// A nucleus as format 2 stored it.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct Format2Nucleus {
    #[serde(with = "super::ids::nucleus_id")]
    id: enlace_protocol::group::NucleusId,
    name: String,
    creator: Option<[u8; 32]>,
    ops: Vec<Vec<u8>>,
    /// Version 1's Lamport clock: version 2 orders by causal parents.
    lamport: u64,
    seen: Vec<SeenGroupMessage>,
    received: Vec<SeenGroupMessage>,
}

/// A profile as format 2 stored it: today's fields but the nuclei.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct Format2Profile {
    identity: [u8; 32],
    created_at: u64,
    home_relay: Option<StoredRelay>,
    next_id: u64,
    contacts: Vec<Contact>,
    invitations: Vec<Invitation>,
    history: Vec<HistoryEntry>,
    outbox: Vec<OutboxEntry>,
    sent: Vec<SentMessage>,
    seen: Vec<EnvelopeId>,
    partial: Vec<PartialMessage>,
    nuclei: Vec<Format2Nucleus>,
    nucleus_tasks: Vec<NucleusTask>,
    introduced: Vec<IntroducedContact>,
}

impl Format2Nucleus {
    /// The nucleus today: its operations are version 1, everyone in it is
    /// joined, the creator owner and the others members.
    fn upgrade(&mut self) -> Nucleus {
        let mut n = Nucleus::new(self.id, std::mem::take(&mut self.name));
        n.creator = self.creator;
        n.ops_v1 = std::mem::take(&mut self.ops);
        n.seen = std::mem::take(&mut self.seen);
        n.received = std::mem::take(&mut self.received);
        n
    }
}

impl Format2Profile {
    fn upgrade(&mut self) -> Profile {
        let mut p = Profile::new(&mut rand::rng(), self.created_at);
        p.identity = self.identity;
        p.home_relay = self.home_relay.take();
        p.next_id = self.next_id;
        p.contacts = std::mem::take(&mut self.contacts);
        p.invitations = std::mem::take(&mut self.invitations);
        p.history = std::mem::take(&mut self.history);
        p.outbox = std::mem::take(&mut self.outbox);
        p.sent = std::mem::take(&mut self.sent);
        p.seen = std::mem::take(&mut self.seen);
        p.partial = std::mem::take(&mut self.partial);
        p.nuclei = self
            .nuclei
            .iter_mut()
            .map(Format2Nucleus::upgrade)
            .collect();
        p.nucleus_tasks = std::mem::take(&mut self.nucleus_tasks);
        p.introduced = std::mem::take(&mut self.introduced);
        p
    }
}

/// Reads the plaintext of a store of `format` 1 or 2 as today's profile
/// (no timers set: the default applies).
pub(crate) fn decode(format: u16, plain: &[u8]) -> Result<Profile, Error> {
    // Authenticated bytes that do not parse were written by a client with
    // another idea of the format: "cannot open".
    match format {
        1 => {
            // Copied into a buffer of the final size, never reallocated.
            let mut longer =
                zeroize::Zeroizing::new(Vec::with_capacity(plain.len() + FORMAT_1_TAIL.len()));
            longer.extend_from_slice(plain);
            longer.extend_from_slice(&FORMAT_1_TAIL);
            decode(2, &longer)
        }
        2 => postcard::from_bytes::<Format2Profile>(plain)
            .map(|mut old| old.upgrade())
            .map_err(|_| Error::CannotOpen),
        _ => Err(Error::CannotOpen),
    }
}
