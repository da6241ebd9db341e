//! Step 10: seccomp, installed last (nsjail: "should be the last one in the
//! sequence"), so every earlier step may still use any syscall.
//!
//! The programs are compiled once by the supervisor from
//! `resources/seccomp/x86_64.json` (see [`crate::seccomp_profile`]) and
//! arrive in the plan; the launcher only installs them. See seccomp(2).

use seccompiler::sock_filter;

use super::plan::unpack_bpf;
use super::LaunchError;

/// Installs every program, in order.
pub fn install(programs: &[Vec<u64>]) -> Result<(), LaunchError> {
    for packed in programs {
        let program: Vec<sock_filter> = packed
            .iter()
            .map(|ins| {
                let (code, jt, jf, k) = unpack_bpf(*ins);
                sock_filter { code, jt, jf, k }
            })
            .collect();
        seccompiler::apply_filter(&program).map_err(|source| LaunchError::Seccomp {
            step: "install seccomp filter".into(),
            source,
        })?;
    }
    Ok(())
}
