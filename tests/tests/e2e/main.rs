//! End-to-end tests: real `enlace-relay` processes on 127.0.0.1, real QUIC
//! with pinned fingerprints, temporary data directories.

#![allow(missing_docs, unreachable_pub)]

mod abuse;
mod durability;
mod load;
mod mailbox;
mod pinning;
mod support;
