//! The task seccomp profile: data in `resources/seccomp/x86_64.json`
//! (seccompiler's format, a comment on every rule), compiled once at
//! start-up by [`crate::seccomp_bpf`] as search trees.
//!
//! The file holds several filters, which a task gets together as one
//! program ([`combined`], [`crate::seccomp_bpf::compile_set`]) that decides
//! as the kernel would for them installed one after another, the strictest
//! verdict of all:
//! - `task`: the allowlist, default `EPERM`;
//! - `clone3_enosys`: `clone3` answers `ENOSYS`, so glibc falls back to
//!   `clone`, whose flags `task` can inspect (no new namespaces);
//! - `sockets_host` / `sockets_none`: socket families, by network mode;
//! - `inet_host`: on the host network, IP sockets only as TCP or UDP (not
//!   MPTCP or SCTP) and no TCP Fast Open: both would connect past
//!   Landlock's TCP rules (landlock-lsm/linux#54 and #41);
//! - `udp_host`: on the host network, no datagram (UDP, ICMP) or raw IP
//!   sockets, unless the policy says `network.udp = true`: Landlock has no
//!   UDP rules, so UDP would reach every UDP service the worker can reach,
//!   other tenants' on loopback included.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The profile's source.
pub const PROFILE_JSON: &str = include_str!("../resources/seccomp/x86_64.json");

/// The filters each kind of task gets, by name, in the order they are
/// installed. Launch plans carry these names; the programs themselves are
/// compiled once per process ([`programs`]): airlockd checks the profile at
/// start-up, and the spawner compiles it before its first fork, so every
/// launcher has it already.
#[derive(Debug, Clone)]
pub struct SeccompPrograms {
    /// Filters for tasks on the host network (no UDP).
    pub host_net: Vec<&'static str>,
    /// Filters for tasks on the host network whose policy allows UDP.
    pub host_net_udp: Vec<&'static str>,
    /// Filters for tasks without network.
    pub no_net: Vec<&'static str>,
}

/// Errors compiling the profile.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SeccompProfileError {
    /// The JSON does not compile.
    #[error("compile seccomp profile: {0}")]
    Compile(String),
    /// A filter the code needs is missing from the JSON.
    #[error("seccomp profile has no filter named {0}")]
    Missing(&'static str),
    /// A launch plan names a filter the profile does not have.
    #[error("seccomp profile has no filter named {0}")]
    Unknown(String),
}

/// The compiled profile, by filter name; compiled on first use.
pub fn programs(
) -> Result<&'static BTreeMap<String, Vec<crate::seccomp_bpf::Insn>>, &'static SeccompProfileError>
{
    static PROGRAMS: OnceLock<
        Result<BTreeMap<String, Vec<crate::seccomp_bpf::Insn>>, SeccompProfileError>,
    > = OnceLock::new();
    PROGRAMS
        .get_or_init(|| {
            crate::seccomp_bpf::compile_profile(PROFILE_JSON)
                .map_err(|err| SeccompProfileError::Compile(err.to_string()))
        })
        .as_ref()
}

/// The named filters as one program, made on first use of these names
/// (the spawner's, before it forks: every launcher finds it made).
pub fn combined(
    names: &[String],
) -> Result<std::sync::Arc<[crate::seccomp_bpf::Insn]>, SeccompProfileError> {
    type Combined = BTreeMap<Vec<String>, std::sync::Arc<[crate::seccomp_bpf::Insn]>>;
    static COMBINED: std::sync::Mutex<Combined> = std::sync::Mutex::new(BTreeMap::new());
    let mut made = COMBINED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(program) = made.get(names) {
        return Ok(program.clone());
    }
    let compiled = programs().map_err(Clone::clone)?;
    if let Some(name) = names.iter().find(|name| !compiled.contains_key(*name)) {
        return Err(SeccompProfileError::Unknown(name.clone()));
    }
    let names_str: Vec<&str> = names.iter().map(String::as_str).collect();
    let program: std::sync::Arc<[_]> = crate::seccomp_bpf::compile_set(PROFILE_JSON, &names_str)
        .map_err(|err| SeccompProfileError::Compile(err.to_string()))?
        .into();
    made.insert(names.to_vec(), program.clone());
    Ok(program)
}

/// Compiles the profile for x86_64 and checks every filter the code names
/// is in it, and that each set of them merges into one program.
pub fn compile() -> Result<SeccompPrograms, SeccompProfileError> {
    let compiled = programs().map_err(Clone::clone)?;
    let host_net_udp = vec!["task", "clone3_enosys", "sockets_host", "inet_host"];
    let mut host_net = host_net_udp.clone();
    host_net.push("udp_host");
    let no_net = vec!["task", "clone3_enosys", "sockets_none"];
    for name in host_net.iter().chain(&no_net) {
        if !compiled.contains_key(*name) {
            return Err(SeccompProfileError::Missing(name));
        }
    }
    for names in [&host_net, &host_net_udp, &no_net] {
        combined(&names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    }
    Ok(SeccompPrograms {
        host_net,
        host_net_udp,
        no_net,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_compiles_with_every_filter() {
        let programs = super::compile().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(programs.host_net.len(), 5);
        assert_eq!(programs.host_net_udp.len(), 4);
        assert_eq!(programs.no_net.len(), 3);
        let compiled = super::programs().unwrap_or_else(|e| panic!("{e:?}"));
        assert!(compiled.values().all(|p| !p.is_empty()));
    }
}
