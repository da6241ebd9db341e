//! Which IAM role a task may assume: the user's entitlements (the policy's
//! SCIM-style `[[entitlement]]` mapping, or the roles of the user's SAML
//! assertion, which then override the mapping) against the role asked for.

use crate::decide::Denial;
use crate::model::{Entitlement, Policy};

/// STS's limit on a plain-text session policy, in characters.
pub const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// A request for credentials, after the task itself was admitted.
#[derive(Debug, Clone, Copy)]
pub struct RoleRequest<'a> {
    /// The user the task runs for.
    pub user: &'a str,
    /// That user's groups.
    pub groups: &'a [String],
    /// The role ARN asked for; `None` takes the default role, if any.
    pub role: Option<&'a str>,
    /// The roles of the user's SAML assertion, when one was given: they are
    /// the user's entitlements then, and the policy's mapping is not used.
    pub saml_roles: Option<&'a [String]>,
}

/// The answer on credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleDecision {
    /// The task runs without AWS credentials.
    NoCredentials,
    /// The task gets a session of this role.
    Assume {
        /// The role ARN.
        role_arn: String,
        /// The `[[role]]` session policy, if any.
        session_policy: Option<String>,
    },
    /// The task may not run.
    Deny(Denial),
}

impl Policy {
    /// Decides which role, if any, a task assumes. Pure: no STS call is
    /// made, so a denial here happens before any.
    pub fn decide_role(&self, req: &RoleRequest<'_>) -> RoleDecision {
        match self.pick_role(req) {
            Ok(None) => RoleDecision::NoCredentials,
            Ok(Some(role_arn)) => RoleDecision::Assume {
                session_policy: self
                    .roles
                    .iter()
                    .find(|r| r.arn == role_arn)
                    .and_then(|r| r.session_policy.clone()),
                role_arn,
            },
            Err(reason) => RoleDecision::Deny(Denial { reason }),
        }
    }

    fn pick_role(&self, req: &RoleRequest<'_>) -> Result<Option<String>, String> {
        let cluster = &self.cluster;
        let user = req.user;
        if self.credentials.is_none() {
            return match (req.role, req.saml_roles) {
                (None, None) => Ok(None),
                (Some(role), _) => Err(format!(
                    "cluster {cluster} gives tasks no AWS credentials (its policy has no \
                     [credentials] section), so role {role} cannot be assumed; run without a \
                     role or ask the cluster operator"
                )),
                (None, Some(_)) => Err(format!(
                    "cluster {cluster} gives tasks no AWS credentials (its policy has no \
                     [credentials] section), so a SAML assertion cannot be used; run without \
                     one or ask the cluster operator"
                )),
            };
        }
        if let Some(saml) = req.saml_roles {
            return match (req.role, saml) {
                (Some(role), _) if saml.iter().any(|r| r == role) => Ok(Some(role.to_owned())),
                (Some(role), _) => Err(format!(
                    "the SAML assertion for {user} does not grant role {role}: it grants [{}]; \
                     ask for one of those, or ask your identity provider's administrator",
                    saml.join(", ")
                )),
                (None, [only]) => Ok(Some(only.clone())),
                (None, _) => Err(format!(
                    "the SAML assertion for {user} grants {} roles [{}]: name one with --role",
                    saml.len(),
                    saml.join(", ")
                )),
            };
        }
        let mine: Vec<&Entitlement> = self
            .entitlements
            .iter()
            .filter(|e| applies(e, req))
            .collect();
        let Some(role) = req.role else {
            return Ok(mine.iter().find_map(|e| e.default_role.clone()));
        };
        if mine.iter().any(|e| e.roles.iter().any(|r| r == role)) {
            return Ok(Some(role.to_owned()));
        }
        let mut allowed: Vec<&str> = Vec::new();
        for r in mine.iter().flat_map(|e| &e.roles) {
            if !allowed.contains(&r.as_str()) {
                allowed.push(r);
            }
        }
        let groups = if req.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups {})", req.groups.join(", "))
        };
        Err(format!(
            "user {user} is not entitled to role {role}: cluster {cluster}'s entitlements allow \
             {user}{groups} [{}]; ask the cluster operator",
            allowed.join(", ")
        ))
    }
}

fn applies(e: &Entitlement, req: &RoleRequest<'_>) -> bool {
    e.users.iter().any(|u| u == req.user) || req.groups.iter().any(|g| e.groups.contains(g))
}

/// `arn:aws[-a-z]*:iam::<12 digits>:role/<path and name>`, with STS's
/// character set for the path and name and at most 2048 characters.
pub fn is_role_arn(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(':') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((account, name)) = rest.split_once(":role/") else {
        return false;
    };
    s.len() <= 2048
        && partition
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c == b'-')
        && (partition.is_empty() || partition.starts_with('-'))
        && account.len() == 12
        && account.bytes().all(|c| c.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&c))
}

/// `arn:aws[-a-z]*:iam::<12 digits>:saml-provider/<name>`.
pub fn is_saml_provider_arn(s: &str) -> bool {
    s.split_once(":saml-provider/").is_some_and(|(head, name)| {
        is_role_arn(&format!("{head}:role/x"))
            && !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        for ok in [
            "arn:aws:iam::123456789012:role/alice-data",
            "arn:aws-us-gov:iam::123456789012:role/path/to/r+=,.@_-",
            "arn:aws-cn:iam::123456789012:role/x",
        ] {
            assert!(is_role_arn(ok), "{ok}");
        }
        for bad in [
            "arn:aws:iam::12345678901:role/x",
            "arn:aws:iam::123456789012:user/x",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:sts::123456789012:role/x",
            "arn:awsx:iam::123456789012:role/x",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012:role/a/",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        assert!(is_saml_provider_arn(
            "arn:aws:iam::123456789012:saml-provider/corp-idp"
        ));
        assert!(!is_saml_provider_arn(
            "arn:aws:iam::123456789012:role/corp-idp"
        ));
    }
}
