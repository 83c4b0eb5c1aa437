//! What the fold makes of one operation.

/// Why an operation does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `create` other than the nucleus's pinned one, or not first.
    NotTheCreate,
    /// Its author is not a member there: never added, removed, or its
    /// admission is not in the operation's past.
    NotMember,
    /// Its author is invited but has not joined: it can only join or
    /// decline.
    NotJoined,
    /// Its author's role does not allow it (in its own past, or against a
    /// concurrent promotion of its target to a role it may not manage).
    NoRole,
    /// It would remove or demote the last owner, or (two owners stepping
    /// down concurrently) leave no owner.
    LastOwner,
    /// Its target is not in the state it needs: adding a member, removing
    /// or changing a non-member, giving a role it has, joining twice.
    Target,
    /// The nucleus has [`super::limits::MAX_MEMBERS`] members already.
    Full,
    /// Its author has made [`super::limits::MAX_OPS_PER_AUTHOR`] changes
    /// in its past already.
    Quota,
    /// A change that needed its author's role (or its membership) is
    /// concurrent with the author's removal or demotion, or rests on a
    /// change that is: the graph cannot tell it from one backdated after.
    Superseded,
}

/// What the fold made of one version-2 operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It counts.
    Counts,
    /// It does not count, for this reason.
    Refused(Refusal),
    /// Some parent (or an ancestor's) is missing: not placed yet.
    Waits,
}
