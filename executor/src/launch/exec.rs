//! Step 7 (open) and 11 (exec) of `docs/launcher.md`: the program is opened before the sandbox
//! closes, and exactly that file is executed with `execveat(AT_EMPTY_PATH)`.
//! The exec still passes every check of the new credentials and Landlock
//! domain (the kernel re-opens the file for exec), so opening early grants
//! nothing. Argument and environment strings are built beforehand.
//!
//! A pinned program (`sha256` in its `[[program]]` rule) is hashed through
//! the descriptor that is then executed, and executed only if the digest
//! matches: a file put in the program's place after the check is a different
//! inode that this descriptor does not reach, so nothing but the hashed file
//! can run. (A writer that
//! rewrites the pinned file itself in place, which needs write access to it,
//! is outside what a pin protects: keep pinned programs root-owned.)

use std::ffi::CString;
use std::os::fd::OwnedFd;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::plan::LaunchPlan;
use super::{sys, LaunchError};

/// The opened program and its exec arguments.
pub struct Program {
    fd: OwnedFd,
    /// The file starts with `#!`: the kernel hands the interpreter
    /// `/dev/fd/N`, so the descriptor must stay open across the exec.
    script: bool,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn cstring(step: &str, s: String) -> Result<CString, LaunchError> {
    CString::new(s).map_err(|_| LaunchError::Check {
        step: step.to_string(),
        detail: "contains a NUL byte".into(),
    })
}

impl Program {
    /// Opens the program for reading (as root: reading grants the task
    /// nothing; an ELF program's descriptor is closed at exec, and a
    /// script's interpreter must read the script anyway), checks its digest
    /// when it is pinned, and builds argv and envp.
    pub fn open(plan: &LaunchPlan) -> Result<Self, LaunchError> {
        let step = format!("open program {}", plan.program.display());
        let fd = open(
            &plan.program,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys(step.clone()))?;
        let fd = match &plan.program_sha256 {
            Some(pinned) => verify(fd, &plan.program, pinned)?,
            None => fd,
        };
        let mut head = [0u8; 2];
        let n = nix::sys::uio::pread(&fd, &mut head, 0).map_err(sys(step))?;
        let script = head[..n] == *b"#!";
        let argv = plan
            .argv
            .iter()
            .map(|a| cstring("argv", a.clone()))
            .collect::<Result<_, _>>()?;
        let envp = plan
            .env
            .iter()
            .map(|(k, v)| cstring("env", format!("{k}={v}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            fd,
            script,
            argv,
            envp,
        })
    }

    /// Replaces this process with the program; returns only the error
    /// when the exec fails. `execveat(fd, "", AT_EMPTY_PATH)` of the
    /// descriptor opened and checked in [`Program::open`]: the kernel
    /// executes exactly that file (and still checks the uid's and
    /// Landlock's rights on it), and since Linux 6.14 names the process
    /// after the file (`python3.11` for `/usr/bin/python3`, a link to it,
    /// in `ps`, `top` and `/proc/PID/comm`; a script after its
    /// interpreter), where
    /// an exec of the path `/proc/self/fd/N` named it `N`. A script's
    /// descriptor is left open for its interpreter, which the kernel hands
    /// `/dev/fd/N` (a close-on-exec descriptor of a script fails with
    /// ENOENT, execveat(2)); an ELF program's is not.
    pub fn exec(self) -> LaunchError {
        if self.script {
            if let Err(errno) = nix::fcntl::fcntl(
                &self.fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            ) {
                return sys("keep the script open for its interpreter")(errno);
            }
        }
        match nix::unistd::execveat(
            &self.fd,
            c"",
            &self.argv,
            &self.envp,
            nix::fcntl::AtFlags::AT_EMPTY_PATH,
        ) {
            Err(errno) => sys("exec program")(errno),
            Ok(never) => match never {},
        }
    }
}

/// Hashes the opened program and hands the same descriptor back when its
/// digest is the pinned one.
fn verify(fd: OwnedFd, program: &std::path::Path, pinned: &str) -> Result<OwnedFd, LaunchError> {
    const STEP: &str = "verify pinned program";
    let file = std::fs::File::from(fd);
    let actual = crate::pin::sha256_hex(&file).map_err(|source| LaunchError::Io {
        step: format!("{STEP} {}", program.display()),
        source,
    })?;
    if actual != pinned {
        return Err(LaunchError::Check {
            step: STEP.into(),
            detail: format!(
                "{}; it was not executed (restore the file, or pin its new digest and reload the policy)",
                crate::pin::mismatch(program, pinned, &actual)
            ),
        });
    }
    Ok(OwnedFd::from(file))
}

/// Changes into the scratch dir and checks the cwd is where we expect.
pub fn enter_scratch(plan: &LaunchPlan) -> Result<(), LaunchError> {
    nix::unistd::chdir(&plan.scratch).map_err(sys("chdir to scratch"))?;
    let cwd = nix::unistd::getcwd().map_err(sys("getcwd"))?;
    if cwd != plan.scratch {
        return Err(LaunchError::Check {
            step: "chdir to scratch".into(),
            detail: format!("cwd is {}", cwd.display()),
        });
    }
    Ok(())
}
