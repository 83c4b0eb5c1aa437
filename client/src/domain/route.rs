//! How envelopes reach a contact's mailbox. A mailbox on the home relay is
//! sent to directly; one on another relay goes through the home relay,
//! sealed to the contact's relay, so this client never contacts that relay
//! and the contact's relay never sees this client's address
//! (`docs/client.md`, "Routes").

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::MailboxId;
use zeroize::Zeroizing;

use super::mailboxes::mailboxes;
use crate::opaque::opaque_debug;
use crate::profile::{Profile, StoredRelay};

/// The way to a relay.
pub(crate) enum Route {
    /// The relay is the home relay.
    Direct,
    /// No safe way: going to the contact's relay directly would show it our
    /// address, so the envelope waits in the outbox (the reason is shown).
    Refuse(&'static str),
    /// Forward through the home relay.
    ViaHome {
        /// The home relay's address.
        home: RelayAddress,
        /// One of our mailboxes there, to prove we are its client.
        proof: Proof,
    },
}

opaque_debug!(Route);

/// A mailbox of ours on the home relay: receive id and recipient key.
pub(crate) struct Proof {
    /// Its receive id.
    pub(crate) receive_id: MailboxId,
    /// Its recipient key's seed.
    pub(crate) recipient: Zeroizing<[u8; 32]>,
}

/// Why an envelope cannot leave without a home relay.
const NO_HOME: &str = "no home relay to forward through, and contacting another \
                       nucleus's relay directly would show it your address";

/// Why an envelope cannot leave without a mailbox of ours at home.
const NO_PROOF: &str = "no mailbox of yours on your home relay to forward through (make one \
                        with `enlace invite`); contacting another nucleus's relay directly \
                        would show it your address";

/// The way from this profile to `relay`.
pub(crate) fn route(profile: &Profile, relay: &StoredRelay) -> Route {
    let Some(home) = &profile.home_relay else {
        return Route::Refuse(NO_HOME);
    };
    let (Ok(home_addr), Ok(dest)) = (home.address(), relay.address()) else {
        return Route::Refuse(NO_HOME);
    };
    if home_addr.fingerprint() == dest.fingerprint() {
        return Route::Direct;
    }
    // Without a mailbox of ours at home, the home relay would refuse to
    // forward; sending directly would show the contact's relay our address,
    // so the envelope waits (every command that makes a contact makes a
    // mailbox at home first).
    let proof = mailboxes(profile).into_iter().find(|m| {
        m.relay
            .address()
            .is_ok_and(|a| a.fingerprint() == home_addr.fingerprint())
    });
    match proof {
        Some(m) => Route::ViaHome {
            home: home_addr.clone(),
            proof: Proof {
                receive_id: m.receive_id.mailbox(),
                recipient: m.recipient.secret_bytes(),
            },
        },
        None => Route::Refuse(NO_PROOF),
    }
}

#[cfg(test)]
mod tests {
    use enlace_protocol::keys::SigningKeyPair;

    use super::*;

    fn address(seed: u8, port: u16) -> StoredRelay {
        let key = SigningKeyPair::from_secret_bytes(&[seed; 32]);
        StoredRelay::new(
            RelayAddress::new(key.public().relay_fingerprint(), "127.0.0.1", port).unwrap(),
        )
    }

    #[test]
    fn never_contacts_another_relay_directly() {
        let mut profile = Profile::new(&mut rand::rng(), 0);
        let home = address(1, 4433);
        let other = address(2, 4434);
        // No home relay: nothing safe to do but wait.
        assert!(matches!(route(&profile, &other), Route::Refuse(_)));
        profile.home_relay = Some(home.clone());
        // The home relay itself: direct.
        assert!(matches!(route(&profile, &home), Route::Direct));
        // Another relay but no mailbox of ours at home to prove we are its
        // client: wait, never connect to the other relay (it would see our
        // address).
        assert!(matches!(route(&profile, &other), Route::Refuse(_)));
        assert!(matches!(
            route(&profile, &StoredRelay::from_text("not an address".into())),
            Route::Refuse(_)
        ));
    }
}
