//! The task seccomp profile: data in `resources/seccomp/x86_64.json`
//! (seccompiler's format, a comment on every rule), compiled once at
//! start-up by [`crate::seccomp_bpf`] as search trees.
//!
//! The file holds four filters, installed together; the kernel applies the
//! strictest verdict of all:
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

use crate::launch::plan::pack_bpf;

/// The profile's source.
pub const PROFILE_JSON: &str = include_str!("../resources/seccomp/x86_64.json");

/// Compiled programs, packed for launch plans.
#[derive(Debug, Clone)]
pub struct SeccompPrograms {
    /// Programs for tasks on the host network (no UDP).
    pub host_net: Vec<Vec<u64>>,
    /// Programs for tasks on the host network whose policy allows UDP.
    pub host_net_udp: Vec<Vec<u64>>,
    /// Programs for tasks without network.
    pub no_net: Vec<Vec<u64>>,
}

/// Errors compiling the profile.
#[derive(Debug, thiserror::Error)]
pub enum SeccompProfileError {
    /// The JSON does not compile.
    #[error("compile seccomp profile")]
    Compile(#[source] crate::seccomp_bpf::CompileError),
    /// A filter the code needs is missing from the JSON.
    #[error("seccomp profile has no filter named {0}")]
    Missing(&'static str),
}

/// Compiles the profile for x86_64.
pub fn compile() -> Result<SeccompPrograms, SeccompProfileError> {
    let mut map =
        crate::seccomp_bpf::compile_profile(PROFILE_JSON).map_err(SeccompProfileError::Compile)?;
    let mut take = |name: &'static str| -> Result<Vec<u64>, SeccompProfileError> {
        map.remove(name)
            .map(|p| pack(&p))
            .ok_or(SeccompProfileError::Missing(name))
    };
    let task = take("task")?;
    let clone3 = take("clone3_enosys")?;
    let host = take("sockets_host")?;
    let inet = take("inet_host")?;
    let udp = take("udp_host")?;
    let none = take("sockets_none")?;
    let host_net_udp = vec![task.clone(), clone3.clone(), host, inet];
    let mut host_net = host_net_udp.clone();
    host_net.push(udp);
    Ok(SeccompPrograms {
        host_net,
        host_net_udp,
        no_net: vec![task, clone3, none],
    })
}

fn pack(program: &[crate::seccomp_bpf::Insn]) -> Vec<u64> {
    program
        .iter()
        .map(|i| pack_bpf(i.code, i.jt, i.jf, i.k))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn profile_compiles_with_every_filter() {
        let programs = super::compile().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(programs.host_net.len(), 5);
        assert_eq!(programs.host_net_udp.len(), 4);
        assert!(programs.no_net.iter().all(|p| !p.is_empty()));
    }
}
