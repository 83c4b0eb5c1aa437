//! Introductions, the profile side: which to plan once we joined,
//! whether one still applies, and what making or accepting one records.
//! The driver does the network part (a mailbox and an invitation, or the
//! handshake) between these.

use enlace_protocol::group::{Introduction, NucleusId};
use enlace_protocol::keys::PublicKey;
use enlace_protocol::session::Invitation as InvitationCode;

use super::limits::MAX_TASKS;
use super::names::{contact_for, has_contact, introduced_name};
use crate::domain::contacts::Accepted;
use crate::domain::outbox::queue_forwards;
use crate::domain::seal::sealer;
use crate::error::Error;
use crate::profile::{
    ContactId, IntroducedContact, Invitation, InvitationId, NucleusTask, Profile,
};

/// After a change in nucleus `index`: if we joined, we introduce
/// ourselves (through our adder) to every member who joined before us
/// that we have no session with. Members who join after us introduce
/// themselves to us.
pub(crate) fn plan(p: &mut Profile, index: usize) {
    let me = p.own_key();
    let Some(n) = p.nuclei.get(index) else {
        return;
    };
    let nucleus = n.id;
    let members = n.members();
    let Some(mine) = members.get(&me).filter(|m| m.joined) else {
        return;
    };
    let via = mine.added_by;
    if via == me || contact_for(p, &via).is_none() {
        return;
    }
    for (key, member) in &members {
        let earlier = matches!((member.joined_at, mine.joined_at), (Some(a), Some(b)) if a < b);
        if *key == me || !earlier || has_contact(p, key) {
            continue;
        }
        let planned = p.nucleus_tasks.iter().any(|t| {
            matches!(t, NucleusTask::Introduce { nucleus: n, member: m, .. } if *n == nucleus && m == key)
        }) || p
            .introduced
            .iter()
            .any(|i| i.nucleus == nucleus && i.member == *key);
        if planned || p.nucleus_tasks.len() >= MAX_TASKS {
            continue;
        }
        p.nucleus_tasks.push(NucleusTask::Introduce {
            nucleus,
            member: *key,
            via,
        });
    }
}

/// Whether we and `member` are joined members of `nucleus`, and we still
/// lack a contact with `member`.
fn applies(p: &Profile, nucleus: NucleusId, member: &[u8; 32]) -> bool {
    let me = p.own_key();
    let Some(n) = p.nuclei.iter().find(|n| n.id == nucleus) else {
        return false;
    };
    let members = n.members();
    let joined = |k: &[u8; 32]| members.get(k).is_some_and(|m| m.joined);
    joined(&me) && joined(member) && !has_contact(p, member)
}

/// Whether we should still introduce ourselves to `member` through our
/// adder `via` (a contact we can write to).
pub(crate) fn should_introduce(
    p: &Profile,
    nucleus: NucleusId,
    member: &[u8; 32],
    via: &[u8; 32],
) -> bool {
    applies(p, nucleus, member) && contact_for(p, via).is_some()
}

/// Records an introduction of ourselves to `member`, if it still applies:
/// the invitation made for it (`make_invitation` gets its id and the name
/// for the contact it will make), and the introduction's `plaintext`
/// sealed for our adder `via`.
pub(crate) fn record_introduction(
    p: &mut Profile,
    nucleus: NucleusId,
    member: [u8; 32],
    via: [u8; 32],
    make_invitation: impl FnOnce(InvitationId, String) -> Invitation,
    plaintext: Vec<u8>,
    now: u64,
) -> Result<(), Error> {
    if !applies(p, nucleus, &member) {
        return Ok(());
    }
    let Some(via_id) = contact_for(p, &via) else {
        return Ok(());
    };
    let n = p
        .nuclei
        .iter()
        .find(|n| n.id == nucleus)
        .ok_or(Error::BrokenState("nucleus"))?;
    let name = introduced_name(p, n, &member);
    let id = p.allocate_invitation_id();
    p.invitations.push(make_invitation(id, name));
    p.introduced.push(IntroducedContact {
        local: id.0,
        pending: true,
        member,
        by: via,
        nucleus,
    });
    queue_forwards(p, vec![(via_id, plaintext)], &mut rand::rng(), sealer(now))
}

/// The introduction a task holds, with the invitation it carries, if that
/// invitation is signed by the introduction's author, not expired at
/// `now`, and the introduction is for `nucleus`.
pub(crate) fn readable(
    nucleus: NucleusId,
    introduction: &[u8],
    now: u64,
) -> Option<(Introduction, InvitationCode)> {
    let intro = Introduction::decode(introduction).ok()?;
    // The invitation must be signed by the member the nucleus names: the
    // key the add operation carried, which also signed the introduction.
    let invitation = InvitationCode::decode(intro.invitation()).ok()?;
    if invitation.identity().as_bytes() != intro.from()
        || invitation.expires_at() < now
        || intro.nucleus() != nucleus
    {
        return None;
    }
    Some((intro, invitation))
}

/// Whether an introduction from `from`, forwarded by contact `via`, may
/// still be accepted: we have no contact with `from`, both of us are
/// members, and `via` is its adder. Returns `via`'s identity key.
pub(crate) fn may_accept(
    p: &Profile,
    nucleus: NucleusId,
    from: &[u8; 32],
    via: ContactId,
) -> Option<[u8; 32]> {
    if p.contacts.iter().any(|c| &c.identity_key == from) {
        return None;
    }
    // Receiving queued it only for a current member forwarded by its own
    // adder; if that no longer holds (removed meanwhile), drop it: nothing
    // that does not apply waits here.
    let via_key = p.contact_by_id(via).map(|c| c.identity_key);
    let adder = p
        .nuclei
        .iter()
        .find(|n| n.id == nucleus)
        .and_then(|n| n.members().get(from).map(|m| m.added_by));
    if !applies(p, nucleus, from) || adder.is_none() || adder != via_key {
        return None;
    }
    adder
}

/// A contact made by accepting an introduction.
pub(crate) struct Introduced {
    /// The contact's local name (`<nucleus>/<name>`).
    pub(crate) name: String,
    /// The nucleus's local name.
    pub(crate) nucleus: String,
    /// Who introduced it (the contact who forwarded the introduction).
    pub(crate) by: String,
}

/// Records the contact that accepting `from`'s introduction made, unless
/// one exists already or the nucleus is gone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_accepted(
    p: &mut Profile,
    nucleus: NucleusId,
    from: [u8; 32],
    identity: &PublicKey,
    via: ContactId,
    via_key: [u8; 32],
    accepted: Accepted,
    now: u64,
) -> Option<Introduced> {
    if p.contacts.iter().any(|c| c.identity_key == from) {
        return None;
    }
    let n = p.nuclei.iter().find(|n| n.id == nucleus)?;
    let name = introduced_name(p, n, &from);
    let nucleus_name = n.name.clone();
    let id = accepted.save(p, &name, identity, now);
    p.introduced.push(IntroducedContact {
        local: id.0,
        pending: false,
        member: from,
        by: via_key,
        nucleus,
    });
    let by = p
        .contact_by_id(via)
        .map(|c| c.name.clone())
        .unwrap_or_default();
    Some(Introduced {
        name,
        nucleus: nucleus_name,
        by,
    })
}

#[cfg(test)]
mod tests {
    use enlace_protocol::address::RelayAddress;
    use enlace_protocol::envelope::MailboxId;
    use enlace_protocol::keys::SigningKeyPair;
    use enlace_protocol::session::PendingInvitation;

    use super::*;

    const N: NucleusId = NucleusId([7; 16]);

    fn key(seed: u8) -> SigningKeyPair {
        SigningKeyPair::from_secret_bytes(&[seed; 32])
    }

    /// An introduction by `from` carrying an invitation made by `maker`.
    fn introduction(from: u8, maker: u8, nucleus: NucleusId, expires_at: u64) -> Vec<u8> {
        let relay =
            RelayAddress::new(key(9).public().relay_fingerprint(), "127.0.0.1", 4433).unwrap();
        let pending = PendingInvitation::create(
            &mut rand::rng(),
            &key(maker),
            relay,
            MailboxId([1; 16]),
            expires_at,
        );
        let to = *key(2).public().as_bytes();
        Introduction::sign(&key(from), nucleus, to, pending.invitation().as_bytes())
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    /// The invitation must be its author's, unexpired, for this nucleus;
    /// anything else (or bytes that do not verify) is not kept.
    #[test]
    fn only_the_authors_unexpired_invitation_is_readable() {
        let good = introduction(5, 5, N, 100);
        let (intro, invitation) = readable(N, &good, 100).unwrap();
        assert_eq!(intro.from(), key(5).public().as_bytes());
        assert_eq!(invitation.identity(), key(5).public());
        // Someone else's invitation, wrapped and signed by 5.
        assert!(readable(N, &introduction(5, 6, N, 100), 100).is_none());
        // Expired, or for another nucleus.
        assert!(readable(N, &good, 101).is_none());
        assert!(readable(NucleusId([8; 16]), &good, 100).is_none());
        // Tampered.
        let mut bad = good.clone();
        bad[20] ^= 1;
        assert!(readable(N, &bad, 100).is_none());
    }
}
