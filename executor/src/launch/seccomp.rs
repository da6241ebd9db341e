//! Step 10: seccomp, installed last (nsjail: "should be the last one in the
//! sequence"), so every earlier step may still use any syscall.
//!
//! The plan names the filters; the spawner compiled the profile
//! (`resources/seccomp/x86_64.json`, see [`crate::seccomp_profile`]) before
//! it forked this launcher, which only installs them. See seccomp(2).

use super::LaunchError;

/// Installs the named filters, in order.
pub fn install(names: &[String]) -> Result<(), LaunchError> {
    let step = "install seccomp filter";
    let programs = crate::seccomp_profile::programs().map_err(|err| LaunchError::Check {
        step: step.into(),
        detail: err.to_string(),
    })?;
    for name in names {
        let program = programs.get(name).ok_or_else(|| LaunchError::Check {
            step: step.into(),
            detail: format!("the profile has no filter named {name}"),
        })?;
        seccompiler::apply_filter(program).map_err(|source| LaunchError::Seccomp {
            step: step.into(),
            source,
        })?;
    }
    Ok(())
}
