//! What the client keeps: the plaintext model inside the encrypted store
//! ([`store`]).
//!
//! Everything here exists only inside the store's ciphertext and in
//! memory; every type zeroizes itself on drop. Keys are kept as their
//! secret bytes; session state is the opaque byte string the session
//! layer's serializer produced. Ids have a type for each kind and relay
//! addresses are parsed when the profile is read; neither changes a byte
//! of the stored encoding.
//!
//! This layer imports only the protocol crate and the crate's leaves
//! (errors, `Debug` helpers): never the domain, driver or commands.

mod contact;
mod datafile;
mod files;
mod ids;
mod kdf;
mod keyfile;
mod legacy;
mod messages;
mod model;
mod nucleus;
mod relay;
mod retention;
mod seen;
mod steps;
pub mod store;
#[cfg(test)]
mod tests;
mod timer;
mod upgrade;

pub use contact::{Contact, Invitation, LocalMailbox, RemoteMailbox, Verification};
pub use ids::{ContactId, EnvelopeId, InvitationId, MessageId, ReceiveId, SendId};
pub use messages::{Direction, HistoryEntry, OutboxEntry, PartialMessage, SentMessage, Status};
pub use model::{Profile, SEEN_IDS_KEPT};
pub use nucleus::{
    IntroducedContact, Notice, NoticeKind, Nucleus, NucleusTask, SEEN_GROUP_KEPT, SeenGroupMessage,
};
pub use relay::StoredRelay;
pub use timer::{
    Conversation, DEFAULT_TIMER_SECS, MAX_NOTICES, MAX_TIMER_SECS, MIN_TIMER_SECS, Timer,
    TimerNotice, TimerSetting,
};
