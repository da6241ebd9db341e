//! Step 10: seccomp, installed last (nsjail: "should be the last one in the
//! sequence"), so every earlier step may still use any syscall.
//!
//! The plan names the filters; the spawner compiled the profile
//! (`resources/seccomp/x86_64.json`, see [`crate::seccomp_profile`]) and
//! merged the named filters into one program before it forked this
//! launcher, which only installs it. One program, not one per filter: the
//! kernel converts, JIT-compiles and emulates (for its cache) each filter
//! installed, and runs each one on every syscall its cache does not
//! settle. See seccomp(2).

use super::LaunchError;

/// Installs the named filters, as one program.
pub fn install(names: &[String]) -> Result<(), LaunchError> {
    let step = "install seccomp filter";
    let program = crate::seccomp_profile::combined(names).map_err(|err| LaunchError::Check {
        step: step.into(),
        detail: err.to_string(),
    })?;
    seccompiler::apply_filter(&program).map_err(|source| LaunchError::Seccomp {
        step: step.into(),
        source,
    })
}
