//! Membership changes to show: worked out from the fold before and after
//! operations arrive, kept in the nucleus until `read` or `listen` shows
//! them, and written with the names and verification states of the
//! moment they are shown.

use enlace_protocol::group::{Action, ActionV1, Fold, Op, Refusal, Role};

use super::limits::{MAX_NOTICES, MAX_REFUSALS_PER_AUTHOR};
use crate::opaque::opaque_debug;
use crate::profile::{Notice, NoticeKind, Nucleus, Profile};

/// What changed for the members between two folds, each change with who
/// made it. Our own invitation is told as [`NoticeKind::Invited`].
pub(crate) fn changes(before: &Fold, after: &Fold, me: &[u8; 32]) -> Vec<Notice> {
    let mut out = Vec::new();
    let notice = |what, by: [u8; 32], member: [u8; 32]| Notice { what, by, member };
    for (key, m) in &after.members {
        match before.members.get(key) {
            None if key == me && !m.joined => {
                out.push(notice(NoticeKind::Invited, m.added_by, *key))
            }
            None if m.joined => out.push(notice(NoticeKind::Joined, m.added_by, *key)),
            None => out.push(notice(NoticeKind::Added, m.added_by, *key)),
            Some(old) => {
                if !old.joined && m.joined {
                    out.push(notice(NoticeKind::Joined, m.added_by, *key));
                }
                if old.role != m.role {
                    out.push(notice(NoticeKind::Role(m.role.byte()), m.changed_by, *key));
                }
            }
        }
    }
    for (key, old) in &before.members {
        if after.members.contains_key(key) {
            continue;
        }
        let what = match after.gone.get(key) {
            Some(by) if by == key && old.joined => NoticeKind::Left,
            Some(by) if by == key => NoticeKind::Declined,
            Some(_) => NoticeKind::Removed,
            None => NoticeKind::Dropped,
        };
        let by = after.gone.get(key).copied().unwrap_or(*key);
        out.push(notice(what, by, *key));
    }
    out
}

/// A change that does not count, as a notice.
pub(crate) fn refusal(op: &Op, why: Refusal) -> Notice {
    let (action, role) = match op.action() {
        Action::Create => (1, 0),
        Action::Add => (2, 0),
        Action::Remove => (3, 0),
        Action::SetRole(r) => (4, r.byte()),
        Action::Join => (5, 0),
    };
    Notice {
        what: NoticeKind::Refused {
            action,
            role,
            reason: refusal_code(why),
        },
        by: *op.author(),
        member: *op.target(),
    }
}

fn refusal_code(why: Refusal) -> u8 {
    match why {
        Refusal::NotTheCreate => 1,
        Refusal::NotMember => 2,
        Refusal::NotJoined => 3,
        Refusal::NoRole => 4,
        Refusal::LastOwner => 5,
        Refusal::Target => 6,
        Refusal::Full => 7,
        Refusal::Superseded => 8,
        Refusal::Quota => 9,
    }
}

/// Why a refused change does not count, in words.
fn reason(code: u8) -> &'static str {
    match code {
        1 => "it founds the nucleus a second time",
        2 => "its author was not a member when they made it",
        3 => "its author had not joined",
        4 => "its author's role does not allow it",
        5 => "it would leave the nucleus without an owner",
        6 => "there was nothing to change",
        7 => "the nucleus is full",
        9 => "its author has made too many changes already",
        _ => "its author was removed or lost the role, and it does not come after that",
    }
}

/// Keeps `notices` for nucleus `n`. Refusals cost their sender nothing,
/// so they never push out a change: at most [`MAX_REFUSALS_PER_AUTHOR`]
/// wait per author, and past [`MAX_NOTICES`] the oldest refusal goes
/// first (the oldest change only when there are no refusals).
pub(crate) fn keep(n: &mut Nucleus, notices: Vec<Notice>) {
    for notice in notices {
        if let NoticeKind::Refused { .. } = notice.what {
            let by_author = n
                .notices
                .iter()
                .filter(|m| matches!(m.what, NoticeKind::Refused { .. }) && m.by == notice.by)
                .count();
            if by_author >= MAX_REFUSALS_PER_AUTHOR {
                continue;
            }
        }
        n.notices.push(notice);
        if n.notices.len() > MAX_NOTICES {
            let refusal = n
                .notices
                .iter()
                .position(|m| matches!(m.what, NoticeKind::Refused { .. }));
            n.notices.remove(refusal.unwrap_or(0));
        }
    }
}

/// A person in a notice: a name to show and a verification state.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Party {
    /// Our contact name for them, "you", or the name their adder gave
    /// them (not yet a contact).
    pub(crate) name: String,
    /// `you`, `verified`, `unverified`, `identity-changed` or
    /// `no-session`.
    pub(crate) state: &'static str,
}

/// A membership change, ready to print.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ShownChange {
    /// The nucleus's local name.
    pub(crate) nucleus: String,
    /// `invited`, `added`, `joined`, `declined`, `left`, `removed`,
    /// `role`, `dropped` or `refused`.
    pub(crate) change: &'static str,
    /// Who made it.
    pub(crate) by: Party,
    /// Whom it concerns.
    pub(crate) member: Party,
    /// The role given (`role`), or the one a refused role change wanted.
    pub(crate) role: Option<&'static str>,
    /// Why a refused change does not count.
    pub(crate) reason: Option<&'static str>,
    /// The sentence, with names as they are (escape before printing).
    pub(crate) text: String,
}

opaque_debug!(Party, ShownChange);

/// How `key` is shown in nucleus `n`.
pub(crate) fn party(p: &Profile, n: &Nucleus, key: &[u8; 32]) -> Party {
    if key == &p.own_key() {
        return Party {
            name: "you".into(),
            state: "you",
        };
    }
    if let Some(c) = p.contacts.iter().find(|c| &c.identity_key == key) {
        return Party {
            name: c.name.clone(),
            state: c.verification().as_str(),
        };
    }
    // The name its adder gave it, from the last `add` naming it that
    // counts (a member who left or was removed is still named).
    let verdicts = n.fold().verdicts;
    let added = n
        .v2_ops()
        .into_iter()
        .filter(|o| o.action() == Action::Add && o.target() == key)
        .filter(|o| verdicts.get(&o.hash()) == Some(&enlace_protocol::group::Verdict::Counts))
        .map(|o| o.name().to_owned())
        .chain(
            n.v1_ops()
                .into_iter()
                .filter(|o| o.action() == ActionV1::Add && o.target() == key)
                .map(|o| o.name().to_owned()),
        )
        .last();
    let suggested = match added {
        Some(name) => super::names::clean_name(&name, "a member"),
        None if n.members().get(key).is_some_and(|m| &m.added_by == key) => "the founder".into(),
        None => "someone you do not know".into(),
    };
    Party {
        name: suggested,
        state: "no-session",
    }
}

fn with_state(party: &Party) -> String {
    match party.state {
        "you" => party.name.clone(),
        "no-session" => format!("{} (no session yet)", party.name),
        state => format!("{} ({state})", party.name),
    }
}

/// The changes not shown yet, written out; marks them shown.
pub(crate) fn take_changes(p: &mut Profile) -> Vec<ShownChange> {
    let mut out = Vec::new();
    for i in 0..p.nuclei.len() {
        let Some(n) = p.nuclei.get(i) else {
            continue;
        };
        for notice in &n.notices {
            out.push(describe(p, n, notice));
        }
        if let Some(n) = p.nuclei.get_mut(i) {
            n.notices.clear();
        }
    }
    out
}

fn describe(p: &Profile, n: &Nucleus, notice: &Notice) -> ShownChange {
    let by = party(p, n, &notice.by);
    let member = party(p, n, &notice.member);
    let (b, m) = (with_state(&by), with_state(&member));
    let role_name = |byte| Role::from_byte(byte).map(Role::as_str).ok();
    let nucleus = &n.name;
    let (change, role, reason, text) = match notice.what {
        NoticeKind::Invited => {
            let others: Vec<String> = n
                .members()
                .iter()
                .filter(|(k, _)| **k != notice.member)
                .map(|(k, mem)| {
                    let role = match (mem.version_1, mem.joined) {
                        // Version 1 had no consent: the inviter alone says
                        // they are in it.
                        (true, _) => "version 1, no consent recorded",
                        (false, true) => mem.role.as_str(),
                        (false, false) => "invited",
                    };
                    format!("{}, {role}", with_state(&party(p, n, k)))
                })
                .collect();
            let text = format!(
                "{b} invited you to #{nucleus}; its members: {}. Nothing is sent or made for it \
                 until you accept with `enlace nucleus join {nucleus}` (or refuse with \
                 `enlace nucleus decline {nucleus}`).",
                others.join("; ")
            );
            ("invited", None, None, text)
        }
        NoticeKind::Added => (
            "added",
            None,
            None,
            format!("{b} invited {m}; not joined yet"),
        ),
        NoticeKind::Joined => ("joined", None, None, format!("{m} joined (invited by {b})")),
        NoticeKind::Declined => (
            "declined",
            None,
            None,
            format!("{m} declined the invitation"),
        ),
        NoticeKind::Left => ("left", None, None, format!("{m} left")),
        NoticeKind::Removed => ("removed", None, None, format!("{b} removed {m}")),
        NoticeKind::Role(r) => {
            let role = role_name(r);
            let text = format!("{b} made {m} {}", role.unwrap_or("?"));
            ("role", role, None, text)
        }
        NoticeKind::Dropped => (
            "dropped",
            None,
            None,
            format!("{m} is no longer counted: the change that made them a member was refused"),
        ),
        NoticeKind::Refused {
            action,
            role,
            reason: code,
        } => {
            let what = match action {
                1 => "found the nucleus again".to_owned(),
                2 => format!("add {m}"),
                3 if notice.by == notice.member => "leave".to_owned(),
                3 => format!("remove {m}"),
                4 => format!("make {m} {}", role_name(role).unwrap_or("?")),
                _ => "join".to_owned(),
            };
            let why = reason(code);
            let text = format!("REFUSED a change by {b} ({what}): {why}");
            ("refused", role_name(role), Some(why), text)
        }
    };
    ShownChange {
        nucleus: nucleus.clone(),
        change,
        by,
        member,
        role,
        reason,
        text,
    }
}
