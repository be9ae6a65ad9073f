//! Administrators' roles and what each may do.

use std::fmt;
use std::str::FromStr;

/// A Manager administrator's role (an API token's too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads events and reports; changes nothing.
    Auditor,
    /// Accounts, groups, bans, handler jobs and sessions; not configuration or administrators.
    Operator,
    /// Everything.
    Admin,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading (every role).
    Read,
    /// Day-to-day changes: accounts, groups, bans, jobs, sessions (operators and admins).
    Operate,
    /// Configuration, administrators and tokens (admins only).
    Administer,
}

impl Role {
    /// Every role, least to most.
    pub const ALL: [Role; 3] = [Role::Auditor, Role::Operator, Role::Admin];

    /// Whether this role may do what `need` asks.
    pub fn may(self, need: Need) -> bool {
        match need {
            Need::Read => true,
            Need::Operate => self >= Role::Operator,
            Need::Administer => self == Role::Admin,
        }
    }

    /// Its name, as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "auditor" => Ok(Role::Auditor),
            other => Err(format!(
                "unknown role {other:?}: use admin, operator or auditor"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_what_it_says() {
        let table = [
            (Role::Auditor, [true, false, false]),
            (Role::Operator, [true, true, false]),
            (Role::Admin, [true, true, true]),
        ];
        for (role, allowed) in table {
            for (need, expected) in [Need::Read, Need::Operate, Need::Administer]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.may(need), expected, "{role} {need:?}");
            }
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
