//! Who may do what. Concur targets: the owner, or a workspace admin of the target's workspace.
//! Workspace expenses: role `owner`, or role `staff` with permission `financial`, in that
//! workspace. Target registration: internal services (role `service`) for the workspace their
//! token names in `ws`, or for every workspace when `ws` is [`ALL_WORKSPACES`].

use super::{Claims, SERVICE_ROLE};
use crate::error::IngestError;

/// The kind of access a rule is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A Concur-style target (receipt, entry, invoice, report).
    Concur,
    /// A workspace expense receipt.
    Workspace,
}

/// May `claims` upload to or read a target owned by `owner` in `workspace`?
pub fn can_use_target(
    claims: &Claims,
    access: Access,
    workspace: &str,
    owner: &str,
) -> Result<(), IngestError> {
    if claims.ws != workspace {
        return Err(IngestError::PermissionDenied(
            "target belongs to another workspace",
        ));
    }
    let allowed = match access {
        Access::Concur => claims.sub == owner || claims.is_admin(),
        Access::Workspace => workspace_finance(claims),
    };
    if allowed {
        Ok(())
    } else {
        Err(IngestError::PermissionDenied(
            "not permitted for this target",
        ))
    }
}

/// The user a request acts for: `requested` (a login ID, i.e. a `sub` of the caller's
/// workspace), or the caller if it is empty. Acting for another user needs an admin role.
pub fn acting_owner(claims: &Claims, requested: &str) -> Result<String, IngestError> {
    if requested.is_empty() || requested == claims.sub {
        return Ok(claims.sub.clone());
    }
    if requested.len() > 256 || requested.chars().any(char::is_control) {
        return Err(IngestError::invalid("owner", "not a valid user login ID"));
    }
    if claims.is_admin() {
        Ok(requested.to_owned())
    } else {
        Err(IngestError::PermissionDenied(
            "only an admin may act for another user",
        ))
    }
}

fn workspace_finance(claims: &Claims) -> bool {
    claims.has_role("owner") || (claims.has_role("staff") && claims.has_perm("financial"))
}

/// May `claims` read the quota usage of `workspace`?
pub fn can_read_usage(claims: &Claims, workspace: &str) -> Result<(), IngestError> {
    let service =
        claims.has_role(SERVICE_ROLE) && (claims.ws == ALL_WORKSPACES || claims.ws == workspace);
    if service || (claims.ws == workspace && (claims.is_admin() || workspace_finance(claims))) {
        Ok(())
    } else {
        Err(IngestError::PermissionDenied(
            "not permitted for this workspace",
        ))
    }
}

/// The `ws` claim of a service token that manages every workspace (the platform's registry).
pub const ALL_WORKSPACES: &str = "*";

/// May `claims` register or remove workspaces and targets of `workspace`?
pub fn can_manage_workspace(claims: &Claims, workspace: &str) -> Result<(), IngestError> {
    if !claims.has_role(SERVICE_ROLE) {
        return Err(IngestError::PermissionDenied(
            "only internal services may register targets",
        ));
    }
    if claims.ws == ALL_WORKSPACES || claims.ws == workspace {
        Ok(())
    } else {
        Err(IngestError::PermissionDenied(
            "this service token does not manage that workspace",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, ws: &str, roles: &[&str], perms: &[&str]) -> Claims {
        Claims {
            sub: sub.into(),
            ws: ws.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            perms: perms.iter().map(|p| p.to_string()).collect(),
            exp: 0,
        }
    }

    #[test]
    fn concur_targets_admit_the_owner_and_admins_of_the_same_workspace_only() {
        let owner = claims("u1", "w1", &[], &[]);
        let other = claims("u2", "w1", &[], &[]);
        let admin = claims("u3", "w1", &["web_services_admin"], &[]);
        let foreign_admin = claims("u4", "w2", &["company_admin"], &[]);
        assert!(can_use_target(&owner, Access::Concur, "w1", "u1").is_ok());
        assert!(can_use_target(&other, Access::Concur, "w1", "u1").is_err());
        assert!(can_use_target(&admin, Access::Concur, "w1", "u1").is_ok());
        assert!(can_use_target(&foreign_admin, Access::Concur, "w1", "u1").is_err());
    }

    #[test]
    fn service_tokens_manage_their_own_workspace_or_all_with_a_star() {
        let scoped = claims("svc", "w1", &["service"], &[]);
        let platform = claims("svc", "*", &["service"], &[]);
        let admin = claims("u1", "w1", &["company_admin"], &[]);
        assert!(can_manage_workspace(&scoped, "w1").is_ok());
        assert!(can_manage_workspace(&scoped, "w2").is_err());
        assert!(can_manage_workspace(&platform, "w2").is_ok());
        assert!(can_manage_workspace(&admin, "w1").is_err());
    }

    #[test]
    fn workspace_expenses_need_owner_or_financial_staff() {
        let owner = claims("u1", "w1", &["owner"], &[]);
        let staff = claims("u2", "w1", &["staff"], &[]);
        let finance = claims("u3", "w1", &["staff"], &["financial"]);
        assert!(can_use_target(&owner, Access::Workspace, "w1", "x").is_ok());
        assert!(can_use_target(&staff, Access::Workspace, "w1", "x").is_err());
        assert!(can_use_target(&finance, Access::Workspace, "w1", "x").is_ok());
        assert!(can_use_target(&finance, Access::Workspace, "w2", "x").is_err());
    }
}
