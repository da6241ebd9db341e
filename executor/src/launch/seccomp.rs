//! Step 10: seccomp, installed last (nsjail: "should be the last one in the
//! sequence"), so every earlier step may still use any syscall.
//!
//! The plan names the filters; the spawner compiled the profile
//! (`resources/seccomp/x86_64.json`, see [`crate::seccomp_profile`]) and
//! merged the named filters into one program before it started this
//! launcher, which only installs it. One program, not one per filter: the
//! kernel converts, JIT-compiles and emulates (for its cache) each filter
//! installed, and runs each one on every syscall its cache does not
//! settle. See seccomp(2).

use super::LaunchError;

/// Installs the merged program.
pub fn install(program: &[crate::seccomp_bpf::Insn]) -> Result<(), LaunchError> {
    seccompiler::apply_filter(program).map_err(|source| LaunchError::Seccomp {
        step: "install seccomp filter".into(),
        source,
    })
}
