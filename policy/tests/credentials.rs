//! The `[credentials]`, `[[entitlement]]` and `[[role]]` sections, and the
//! role decision.
#![allow(clippy::unwrap_used)]

use airlock_policy::{
    CredentialsConfig, Denial, Entitlement, Policy, RoleDecision, RoleRequest, RoleRule,
};
use pretty_assertions::assert_eq;

const ALICE: &str = "arn:aws:iam::123456789012:role/alice-data";
const BOB: &str = "arn:aws:iam::123456789012:role/bob-data";
const SHARED: &str = "arn:aws:iam::123456789012:role/shared-read";

const BASE: &str = r#"cluster = "c1"
mode = "shared"
[sandbox]
uid_first = 200000
uid_count = 1000
scratch_root = "/var/lib/airlock/tasks"
read_only = ["/usr/lib"]
[network]
mode = "host"
[[program]]
path = "/usr/bin/python3"
"#;

const CREDS: &str = r#"
[credentials]
region = "us-east-1"
sts_endpoint = "http://127.0.0.1:5000"
task_endpoint_url = "http://127.0.0.1:5000"
duration = "1h"
refresh_margin = "5m"

[[entitlement]]
users = ["alice"]
roles = ["arn:aws:iam::123456789012:role/alice-data"]
default_role = "arn:aws:iam::123456789012:role/alice-data"

[[entitlement]]
users = ["bob"]
groups = ["analysts"]
roles = ["arn:aws:iam::123456789012:role/bob-data", "arn:aws:iam::123456789012:role/shared-read"]

[[role]]
arn = "arn:aws:iam::123456789012:role/shared-read"
session_policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
"#;

fn policy() -> Policy {
    Policy::parse(&format!("{BASE}{CREDS}"), "p.toml").unwrap()
}

fn errors(extra: &str) -> Vec<String> {
    let errors = Policy::parse(&format!("{BASE}{extra}"), "p.toml").unwrap_err();
    errors.0.iter().map(ToString::to_string).collect()
}

fn decide(user: &str, groups: &[&str], role: Option<&str>, saml: Option<&[&str]>) -> RoleDecision {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let saml: Option<Vec<String>> = saml.map(|s| s.iter().map(|r| r.to_string()).collect());
    policy().decide_role(&RoleRequest {
        user,
        groups: &groups,
        role,
        saml_roles: saml.as_deref(),
    })
}

fn assume(role: &str) -> RoleDecision {
    RoleDecision::Assume {
        role_arn: role.into(),
        session_policy: None,
    }
}

fn deny(reason: &str) -> RoleDecision {
    RoleDecision::Deny(Denial {
        reason: reason.into(),
    })
}

#[test]
fn credentials_sections_parse_into_every_field() {
    let p = policy();
    assert_eq!(
        p.credentials,
        Some(CredentialsConfig {
            region: "us-east-1".into(),
            sts_endpoint: Some("http://127.0.0.1:5000".into()),
            task_endpoint_url: Some("http://127.0.0.1:5000".into()),
            duration_secs: 3600,
            refresh_margin_secs: 300,
        })
    );
    assert_eq!(
        p.entitlements,
        vec![
            Entitlement {
                users: vec!["alice".into()],
                groups: vec![],
                roles: vec![ALICE.into()],
                default_role: Some(ALICE.into()),
            },
            Entitlement {
                users: vec!["bob".into()],
                groups: vec!["analysts".into()],
                roles: vec![BOB.into(), SHARED.into()],
                default_role: None,
            },
        ]
    );
    assert_eq!(p.roles.len(), 1);
    assert_eq!(
        p.roles[0],
        RoleRule {
            arn: SHARED.into(),
            session_policy: p.roles[0].session_policy.clone(),
        }
    );
}

#[test]
fn omitted_credentials_keys_take_defaults() {
    let p = Policy::parse(
        &format!("{BASE}[credentials]\nregion = \"eu-west-1\"\n"),
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        p.credentials,
        Some(CredentialsConfig {
            region: "eu-west-1".into(),
            sts_endpoint: None,
            task_endpoint_url: None,
            duration_secs: 3600,
            refresh_margin_secs: 300,
        })
    );
}

#[test]
fn durations_outside_sts_limits_are_load_errors() {
    assert_eq!(
        errors("[credentials]\nregion = \"us-east-1\"\nduration = \"2h\"\n"),
        vec!["p.toml:14:12: credentials.duration: 7200 s is outside STS's range for these sessions: use 15m (STS's minimum) to 1h (the limit for a role assumed from the worker's own role session)"]
    );
    assert_eq!(
        errors("[credentials]\nregion = \"us-east-1\"\nduration = 600\n").len(),
        1
    );
    assert_eq!(
        errors("[credentials]\nregion = \"us-east-1\"\nduration = \"15m\"\nrefresh_margin = \"15m\"\n"),
        vec!["p.toml:15:18: credentials.refresh_margin: a refresh margin of 900 s is not below the session duration of 900 s: every request would call STS again; use a smaller margin"]
    );
}

#[test]
fn malformed_arns_policies_and_defaults_are_load_errors() {
    let text = r#"[credentials]
region = "us-east-1"
[[entitlement]]
users = ["alice"]
roles = ["arn:aws:iam::1234:role/x"]
default_role = "arn:aws:iam::123456789012:role/other"
[[role]]
arn = "arn:aws:iam::123456789012:role/x"
session_policy = '["not an object"]'
"#;
    assert_eq!(
        errors(text),
        vec![
            "p.toml:16:10: entitlement[1].roles[1]: \"arn:aws:iam::1234:role/x\" is not an IAM role ARN: write one like \"arn:aws:iam::123456789012:role/data-reader\"",
            "p.toml:17:16: entitlement[1].default_role: default role arn:aws:iam::123456789012:role/other is not one of this entitlement's roles: add it to roles",
            "p.toml:20:18: role[1].session_policy: a session policy is a JSON object like {\"Version\": \"2012-10-17\", \"Statement\": [...]}",
        ]
    );
}

#[test]
fn unknown_credentials_keys_are_rejected() {
    let errs = errors("[credentials]\nregion = \"us-east-1\"\naccess_key = \"x\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("access_key"), "{errs:?}");
}

#[test]
fn entitled_role_is_assumed_and_default_applies() {
    assert_eq!(decide("alice", &[], Some(ALICE), None), assume(ALICE));
    assert_eq!(decide("alice", &[], None, None), assume(ALICE));
    assert_eq!(decide("carol", &["analysts"], Some(BOB), None), assume(BOB));
    assert_eq!(decide("bob", &[], None, None), RoleDecision::NoCredentials);
    assert_eq!(
        decide("bob", &[], Some(SHARED), None),
        RoleDecision::Assume {
            role_arn: SHARED.into(),
            session_policy: policy().roles[0].session_policy.clone(),
        }
    );
}

#[test]
fn deny_when_role_not_entitled() {
    assert_eq!(
        decide("bob", &["analysts"], Some(ALICE), None),
        deny("user bob is not entitled to role arn:aws:iam::123456789012:role/alice-data: cluster c1's entitlements allow bob (groups analysts) [arn:aws:iam::123456789012:role/bob-data, arn:aws:iam::123456789012:role/shared-read]; ask the cluster operator")
    );
    assert_eq!(
        decide("mallory", &[], Some(ALICE), None),
        deny("user mallory is not entitled to role arn:aws:iam::123456789012:role/alice-data: cluster c1's entitlements allow mallory []; ask the cluster operator")
    );
}

#[test]
fn saml_roles_override_the_mapping() {
    assert_eq!(decide("mallory", &[], Some(BOB), Some(&[BOB])), assume(BOB));
    assert_eq!(decide("mallory", &[], None, Some(&[BOB])), assume(BOB));
    assert_eq!(
        decide("alice", &[], Some(ALICE), Some(&[BOB])),
        deny("the SAML assertion for alice does not grant role arn:aws:iam::123456789012:role/alice-data: it grants [arn:aws:iam::123456789012:role/bob-data]; ask for one of those, or ask your identity provider's administrator")
    );
    assert!(matches!(
        decide("alice", &[], None, Some(&[ALICE, BOB])),
        RoleDecision::Deny(_)
    ));
}

#[test]
fn deny_role_when_cluster_has_no_credentials() {
    let p = Policy::parse(BASE, "p.toml").unwrap();
    let req = RoleRequest {
        user: "alice",
        groups: &[],
        role: Some(ALICE),
        saml_roles: None,
    };
    assert_eq!(
        p.decide_role(&req),
        deny("cluster c1 gives tasks no AWS credentials (its policy has no [credentials] section), so role arn:aws:iam::123456789012:role/alice-data cannot be assumed; run without a role or ask the cluster operator")
    );
    let none = RoleRequest { role: None, ..req };
    assert_eq!(p.decide_role(&none), RoleDecision::NoCredentials);
}
