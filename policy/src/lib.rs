//! Airlock's policy: the per-cluster TOML file an operator writes, parsed
//! and validated into typed values, and the pure functions that decide on
//! task requests.
//!
//! Bytes or strings in, typed decisions out: this crate reads no files,
//! clocks or environment (the executor reads the policy file and passes its
//! text to [`Policy::parse`]).
//!
//! - [`Policy::parse`] reports every problem it finds, each with line,
//!   column and dotted key ([`PolicyErrors`]).
//! - [`validate_request`] checks a request's shape (sizes, character sets,
//!   a normalized absolute program path, no reserved environment).
//! - [`Policy::decide`] answers with a [`Decision`]: an [`Admission`] with
//!   the effective limits, or a [`Denial`] whose reason names the rule or
//!   setting that decided.
//! - [`Policy::warnings`] lists risky but valid entries (an interpreter that
//!   can read tenant-writable places, port 80, directories of executables),
//!   given [`HostFacts`] the caller gathered.
//! - [`Policy::decide_role`] answers which IAM role a task assumes, from the
//!   `[[entitlement]]` mapping or the roles of the user's SAML assertion
//!   ([`RoleDecision`]), before any STS call.
//!
//! # Test strategy
//!
//! Table-driven unit tests compare whole values: parsing a complete policy,
//! the line, column and key of each kind of error, each decision and each
//! request rule. Every file in `examples/` is parsed in a test so that it
//! stays valid and free of warnings.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod decide;
mod model;
mod parse;
mod request;
mod roles;
mod units;
mod warn;

pub use decide::{Admission, Decision, Denial, TaskRequest};
pub use model::{
    ClusterMode, CredentialsConfig, Entitlement, Layer, Limits, Network, NetworkMode,
    ParseLayerError, Policy, ProgramRule, RequestedLimits, RoleRule, UidPool, DEFAULT_AUDIT_LOG,
};
pub use parse::{locate_key, PolicyError, PolicyErrors};
pub use request::{
    clip, validate_request, RequestError, RequestShape, MAX_ARGS, MAX_ARGS_TOTAL_BYTES,
    MAX_ARG_BYTES, MAX_ENV_NAME_BYTES, MAX_PATH_BYTES, MAX_STDIN_BYTES,
};
pub use roles::{
    is_role_arn, is_saml_provider_arn, RoleDecision, RoleRequest, MAX_SESSION_POLICY_CHARS,
};
pub use warn::{is_interpreter, HostFacts, PolicyWarning};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use pretty_assertions::assert_eq;
    use std::path::PathBuf;

    #[test]
    fn example_file_parses_into_the_documented_policy() {
        let text = include_str!("../../examples/policy.toml");
        let policy = Policy::parse(text, "examples/policy.toml").unwrap();
        let want = Policy {
            cluster: "example-shared".into(),
            mode: ClusterMode::Shared,
            uid_pool: UidPool {
                first: 200000,
                count: 1000,
            },
            scratch_root: "/var/lib/airlock/tasks".into(),
            audit_log: "/var/log/airlock/audit.jsonl".into(),
            read_only: [
                "/usr/lib/python3",
                "/usr/lib/python3.11",
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib/locale",
                "/usr/lib/ssl",
                "/usr/local/lib/python3.11",
                "/usr/share",
                "/etc",
            ]
            .map(PathBuf::from)
            .to_vec(),
            best_effort: vec![],
            network: Network {
                mode: NetworkMode::Host,
                connect_tcp: vec![443],
                udp: false,
            },
            limits: Limits {
                memory_bytes: 2 << 30,
                processes: 128,
                open_files: 1024,
                file_size_bytes: 1 << 30,
                cpu_seconds: 1800,
                wall_time_ms: 30 * 60_000,
                output_bytes: 16 << 20,
                tmp_bytes: 256 << 20,
                scratch_bytes: 1 << 30,
            },
            programs: vec![ProgramRule {
                path: "/usr/bin/python3".into(),
                users: vec![],
                groups: vec![],
                justification: Some("data-science jobs are Python scripts".into()),
                sha256: None,
            }],
            credentials: None,
            entitlements: vec![],
            roles: vec![],
        };
        assert_eq!(policy, want);
    }

    #[test]
    fn every_example_parses_and_draws_no_warning() {
        let examples = [
            ("policy.toml", include_str!("../../examples/policy.toml")),
            (
                "single-user.toml",
                include_str!("../../examples/single-user.toml"),
            ),
            (
                "locked-down.toml",
                include_str!("../../examples/locked-down.toml"),
            ),
        ];
        for (name, text) in examples {
            let policy = Policy::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(policy.warnings(&HostFacts::default()), vec![], "{name}");
        }
    }

    #[test]
    fn examples_are_the_clusters_they_say() {
        let single = Policy::parse(include_str!("../../examples/single-user.toml"), "s").unwrap();
        assert_eq!(
            single.mode,
            ClusterMode::SingleUser {
                user: "alice".into()
            }
        );
        let locked = Policy::parse(include_str!("../../examples/locked-down.toml"), "l").unwrap();
        assert_eq!(locked.network.mode, NetworkMode::None);
        assert_eq!(locked.credentials, None);
        assert_eq!(locked.programs[0].groups, vec!["etl".to_string()]);
    }
}
