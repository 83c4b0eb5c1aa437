//! Roles in a nucleus, and what each may do to whom.
//!
//! | role | may |
//! |---|---|
//! | owner | add; remove anyone; give or take any role |
//! | admin | add; remove members and admins; make members admins and admins members |
//! | member | send; leave |
//!
//! Nobody but itself removes or demotes the last owner, and the last owner
//! cannot demote itself either (it can leave). The fold applies these
//! rules ([`super::Fold`]); a client checks them too before it signs.

use crate::DecodeError;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Manages members and roles, including owners. The creator is the
    /// first owner.
    Owner,
    /// Adds and removes members and admins, and moves them between those
    /// two roles.
    Admin,
    /// Sends and leaves.
    Member,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Self; 3] = [Self::Owner, Self::Admin, Self::Member];

    /// Its byte in an operation.
    pub fn byte(self) -> u8 {
        match self {
            Self::Owner => 1,
            Self::Admin => 2,
            Self::Member => 3,
        }
    }

    /// The role a byte names.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::Owner),
            2 => Ok(Self::Admin),
            3 => Ok(Self::Member),
            _ => Err(DecodeError::InvalidField("nucleus role")),
        }
    }

    /// Its lowercase English name, as the client shows and parses it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Whether it may add members and remove others at all.
    pub fn manages(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }

    /// Whether a member with this role may remove, or change the role of,
    /// a member who has `target` role.
    pub fn may_manage(self, target: Self) -> bool {
        match self {
            Self::Owner => true,
            Self::Admin => target != Self::Owner,
            Self::Member => false,
        }
    }

    /// Whether a member with this role may give the role `to`.
    pub fn may_grant(self, to: Self) -> bool {
        match self {
            Self::Owner => true,
            Self::Admin => to != Self::Owner,
            Self::Member => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_rules() {
        for r in Role::ALL {
            assert_eq!(Role::from_byte(r.byte()), Ok(r));
        }
        assert!(Role::from_byte(0).is_err() && Role::from_byte(4).is_err());
        assert!(Role::Owner.may_manage(Role::Owner) && Role::Owner.may_grant(Role::Owner));
        assert!(Role::Admin.may_manage(Role::Admin) && !Role::Admin.may_manage(Role::Owner));
        assert!(Role::Admin.may_grant(Role::Admin) && !Role::Admin.may_grant(Role::Owner));
        assert!(!Role::Member.may_manage(Role::Member) && !Role::Member.manages());
    }
}
