//! Step 7 and 9: the Landlock ruleset. Made by the spawner with the task's
//! mount namespace, most often ahead of the request ([`prepare`]); the
//! task's init adds the rules on its scratch dir and /proc, which only it
//! can make ([`TaskRuleset::finish`]), and enforces it after the uid switch
//! and after every mount ([`enforce`]).
//!
//! Filesystem (every right of the ABI is handled, so anything not granted
//! below is denied):
//! - read-only paths from the policy: READ_FILE | READ_DIR (no EXECUTE);
//! - executables (allowlisted programs and their interpreters): READ_FILE |
//!   EXECUTE, on those files only: **this is the exec allowlist**;
//! - scratch dir, /tmp, /dev/shm: read and write, never EXECUTE (they are
//!   also mounted noexec);
//! - /dev/null, /dev/zero, /dev/full read-write, /dev/random and
//!   /dev/urandom read-only; /proc (the task's own) read-only.
//!
//! Network (ABI 4+): TCP bind is denied, TCP connect allowed only to the
//! plan's ports: this keeps tasks off the cloud metadata service, the
//! supervisor's API and other tasks' listeners.
//!
//! Scopes (ABI 6+): abstract unix sockets and signals cannot cross out of the
//! task's domain.
//!
//! The supervisor probes the ABI and refuses to start when a layer the policy
//! requires is missing, so the ruleset is built with `HardRequirement`: it is
//! fully enforced or the launch fails. See landlock(7).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};
use nix::fcntl::OFlag;

use super::plan::LaunchPlan;
use super::template::Template;
use super::{sys, LaunchError};

/// The newest ABI whose rights we use.
const NEWEST_USED: i32 = 6;

/// The device nodes of every task's /dev and whether the task may write
/// them.
pub const DEVICES: [(&str, bool); 5] = [
    ("/dev/null", true),
    ("/dev/zero", true),
    ("/dev/full", true),
    ("/dev/random", false),
    ("/dev/urandom", false),
];

fn ll(step: &str) -> impl FnOnce(landlock::RulesetError) -> LaunchError + '_ {
    move |source| LaunchError::Landlock {
        step: step.to_string(),
        source,
    }
}

/// A task's ruleset as the spawner makes it, with the task's mount
/// namespace ([`super::mounts::make_task_root`]): every rule but the two
/// that only the task's init can add, since their directories do not
/// exist before it: its scratch dir and its /proc ([`TaskRuleset::finish`]).
pub struct TaskRuleset {
    fd: OwnedFd,
    /// What the task may do in its scratch dir, and in /proc (the kernel's
    /// `LANDLOCK_ACCESS_FS_*` bits).
    scratch: u64,
    proc: u64,
}

/// The rights of a rule on a file or a directory.
struct Rights {
    abi: ABI,
    read: BitFlags<AccessFs>,
    exec: BitFlags<AccessFs>,
    write: BitFlags<AccessFs>,
    device_rw: BitFlags<AccessFs>,
}

impl Rights {
    fn of(abi: ABI) -> Self {
        let all = AccessFs::from_all(abi);
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        Self {
            abi,
            read,
            exec: AccessFs::ReadFile | AccessFs::Execute,
            write: (all
                & !(AccessFs::Execute
                    | AccessFs::IoctlDev
                    | AccessFs::MakeChar
                    | AccessFs::MakeBlock))
                | read,
            device_rw: (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate) & all,
        }
    }

    /// A rule on a file may only carry file rights.
    fn for_kind(&self, access: BitFlags<AccessFs>, is_dir: bool) -> BitFlags<AccessFs> {
        match is_dir {
            true => access,
            false => access & AccessFs::from_file(self.abi),
        }
    }
}

/// Builds a task's ruleset, in the task's mount namespace (the spawner,
/// between making its tmpfs and returning home): the template's paths
/// through the descriptors the template holds, /tmp and /dev/shm (the
/// task's fresh tmpfs) and any other path opened here. `None` when the
/// host has no Landlock and the policy allows running without it (ABI 0).
pub fn prepare(
    landlock_abi: i32,
    connect_tcp: &[u16],
    template: &Template,
) -> Result<Option<TaskRuleset>, LaunchError> {
    if landlock_abi < 1 {
        return Ok(None);
    }
    let rights = Rights::of(ABI::from(landlock_abi.min(NEWEST_USED)));
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(rights.abi))
        .map_err(ll("landlock filesystem rights"))?;
    if landlock_abi >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(ll("landlock network rights"))?;
    }
    if landlock_abi >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(ll("landlock scopes"))?;
    }
    let mut created = ruleset.create().map_err(ll("create landlock ruleset"))?;

    let mut grants: Vec<(&Path, BitFlags<AccessFs>)> = Vec::new();
    grants.extend(
        template
            .spec
            .read_only
            .iter()
            .map(|p| (p.as_path(), rights.read)),
    );
    grants.extend(
        template
            .spec
            .executables
            .iter()
            .map(|p| (p.as_path(), rights.exec)),
    );
    grants.push(("/tmp".as_ref(), rights.write));
    grants.push(("/dev/shm".as_ref(), rights.write));
    for (dev, writable) in DEVICES {
        let access = match writable {
            true => rights.device_rw,
            false => AccessFs::ReadFile.into(),
        };
        grants.push((dev.as_ref(), access));
    }
    for (path, access) in grants {
        created = match template.opened.iter().find(|o| o.path == path) {
            Some(o) => created.add_rule(PathBeneath::new(&o.fd, rights.for_kind(access, o.is_dir))),
            None => {
                let fd = PathFd::new(path).map_err(|err| LaunchError::Check {
                    step: "open landlock path".into(),
                    detail: format!("{}: {err}", path.display()),
                })?;
                created.add_rule(PathBeneath::new(fd, rights.for_kind(access, path.is_dir())))
            }
        }
        .map_err(ll("add landlock path rule"))?;
    }
    if landlock_abi >= 4 {
        for port in connect_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(ll("add landlock port rule"))?;
        }
    }
    let fd: Option<OwnedFd> = created.into();
    Ok(Some(TaskRuleset {
        fd: fd.ok_or_else(|| LaunchError::Check {
            step: "create landlock ruleset".into(),
            detail: "the landlock crate made no ruleset".into(),
        })?,
        scratch: rights.write.bits(),
        proc: rights.read.bits(),
    }))
}

impl TaskRuleset {
    /// The ruleset's descriptor, which the init keeps open.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// In the task's init, in its mount namespace once its scratch dir and
    /// /proc are there: the rules on those two.
    pub fn finish(&self, plan: &LaunchPlan) -> Result<&Self, LaunchError> {
        for (dir, access) in [
            (plan.scratch.as_path(), self.scratch),
            ("/proc".as_ref(), self.proc),
        ] {
            let step = || format!("add landlock rule for {}", dir.display());
            let fd = nix::fcntl::open(
                dir,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(sys(step()))?;
            crate::sys::landlock_add_path_rule(self.fd.as_fd(), fd.as_fd(), access)
                .map_err(sys(step()))?;
        }
        Ok(self)
    }
}

/// Sets no_new_privs and restricts this process; returns the layer names.
/// The ruleset was made with `HardRequirement`: every right it handles is
/// enforced, or making it failed.
pub fn enforce(ruleset: &TaskRuleset, abi: i32) -> Result<Vec<&'static str>, LaunchError> {
    nix::sys::prctl::set_no_new_privs().map_err(sys("no_new_privs"))?;
    crate::sys::landlock_restrict_self(ruleset.as_fd()).map_err(sys("landlock restrict_self"))?;
    super::fds::close_inherited(ruleset.as_fd());
    let mut layers = vec!["landlock-fs"];
    if abi >= 4 {
        layers.push("landlock-net");
    }
    if abi >= 6 {
        layers.push("landlock-scope");
    }
    Ok(layers)
}
