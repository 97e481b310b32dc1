//! Who may do what: the role matrix, denying by default.
//!
//! Every route and server function names the one permission it needs; nothing checks a role
//! directly, so the whole policy is this table.

use serde::{Deserialize, Serialize};

use super::Role;

/// One thing a dashboard user can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// See devices, keys (never their secrets), codes and policies.
    ReadConfiguration,
    /// Approve, suspend, reactivate, rename and revoke devices.
    ManageDevices,
    /// Create, rotate and revoke API keys and their provider secrets.
    ManageKeys,
    /// Issue and revoke enrollment codes.
    ManageEnrollmentCodes,
    /// Set and clear policies.
    ManagePolicies,
    /// Read the audit trail, verify it and export it.
    ReadAudit,
    /// See the dashboard users.
    ReadUsers,
    /// Create users, change roles, disable, reset passwords.
    ManageUsers,
}

impl Permission {
    pub const ALL: [Permission; 8] = [
        Permission::ReadConfiguration,
        Permission::ManageDevices,
        Permission::ManageKeys,
        Permission::ManageEnrollmentCodes,
        Permission::ManagePolicies,
        Permission::ReadAudit,
        Permission::ReadUsers,
        Permission::ManageUsers,
    ];

    /// Whether the permission changes anything (an auditor holds none of these).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Permission::ManageDevices
                | Permission::ManageKeys
                | Permission::ManageEnrollmentCodes
                | Permission::ManagePolicies
                | Permission::ManageUsers
        )
    }
}

impl Role {
    /// The role matrix. Anything not listed is denied.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Operator => matches!(
                permission,
                ReadConfiguration
                    | ManageDevices
                    | ManageKeys
                    | ManageEnrollmentCodes
                    | ManagePolicies
                    | ReadAudit
            ),
            Role::Auditor => matches!(permission, ReadConfiguration | ReadAudit | ReadUsers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_may_do_everything() {
        assert!(Permission::ALL.iter().all(|p| Role::Admin.allows(*p)));
    }

    #[test]
    fn operator_runs_the_fleet_but_not_the_users() {
        assert!(Role::Operator.allows(Permission::ManageDevices));
        assert!(Role::Operator.allows(Permission::ManageKeys));
        assert!(Role::Operator.allows(Permission::ManagePolicies));
        assert!(!Role::Operator.allows(Permission::ManageUsers));
        assert!(!Role::Operator.allows(Permission::ReadUsers));
    }

    #[test]
    fn auditor_changes_nothing() {
        for permission in Permission::ALL {
            if permission.writes() {
                assert!(!Role::Auditor.allows(permission), "{permission:?}");
            }
        }
        assert!(Role::Auditor.allows(Permission::ReadAudit));
    }
}
