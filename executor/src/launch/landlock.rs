//! Step 7 and 9: the Landlock ruleset. Built while still root, enforced after
//! the uid switch and after every mount (a later mount would not be covered).
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

use landlock::{
    Access, AccessFs, AccessNet, CompatLevel, Compatible, NetPort, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use super::plan::{LaunchPlan, NetPlan};
use super::template::Opened;
use super::LaunchError;

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

/// Builds the ruleset, opening every path now that `opened` (the template
/// root's, see `template.rs`) does not hold; `None` when the host has no
/// Landlock and the policy allows running without it (ABI 0 in the plan).
pub fn prepare(
    plan: &LaunchPlan,
    opened: &[Opened],
) -> Result<Option<RulesetCreated>, LaunchError> {
    if plan.landlock_abi < 1 {
        return Ok(None);
    }
    let abi = ABI::from(plan.landlock_abi.min(NEWEST_USED));
    let all = AccessFs::from_all(abi);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let exec = AccessFs::ReadFile | AccessFs::Execute;
    let write = (all
        & !(AccessFs::Execute | AccessFs::IoctlDev | AccessFs::MakeChar | AccessFs::MakeBlock))
        | read;
    let device_rw = (AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate) & all;

    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)
        .map_err(ll("landlock filesystem rights"))?;
    if plan.landlock_abi >= 4 {
        ruleset = ruleset
            .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)
            .map_err(ll("landlock network rights"))?;
    }
    if plan.landlock_abi >= 6 {
        ruleset = ruleset
            .scope(Scope::AbstractUnixSocket | Scope::Signal)
            .map_err(ll("landlock scopes"))?;
    }
    let mut created = ruleset.create().map_err(ll("create landlock ruleset"))?;

    let mut grants: Vec<(&std::path::Path, landlock::BitFlags<AccessFs>)> = Vec::new();
    grants.extend(plan.read_only.iter().map(|p| (p.as_path(), read)));
    grants.extend(plan.executables.iter().map(|p| (p.as_path(), exec)));
    grants.push((plan.scratch.as_path(), write));
    grants.push(("/tmp".as_ref(), write));
    grants.push(("/dev/shm".as_ref(), write));
    grants.push(("/proc".as_ref(), read));
    for (dev, writable) in DEVICES {
        let access = match writable {
            true => device_rw,
            false => AccessFs::ReadFile.into(),
        };
        grants.push((dev.as_ref(), access));
    }
    for (path, access) in grants {
        // A rule on a file may only carry file rights.
        let for_kind = |is_dir: bool| match is_dir {
            true => access,
            false => access & AccessFs::from_file(abi),
        };
        created = match opened.iter().find(|o| o.path == path) {
            Some(o) => created.add_rule(PathBeneath::new(&o.fd, for_kind(o.is_dir))),
            None => {
                let fd = PathFd::new(path).map_err(|err| LaunchError::Check {
                    step: "open landlock path".into(),
                    detail: format!("{}: {err}", path.display()),
                })?;
                created.add_rule(PathBeneath::new(fd, for_kind(path.is_dir())))
            }
        }
        .map_err(ll("add landlock path rule"))?;
    }
    if let (NetPlan::Host { connect_tcp }, true) = (&plan.network, plan.landlock_abi >= 4) {
        for port in connect_tcp {
            created = created
                .add_rule(NetPort::new(*port, AccessNet::ConnectTcp))
                .map_err(ll("add landlock port rule"))?;
        }
    }
    Ok(Some(created))
}

/// Sets no_new_privs and restricts this process; returns the layer names.
pub fn enforce(ruleset: RulesetCreated, abi: i32) -> Result<Vec<&'static str>, LaunchError> {
    let status = ruleset
        .restrict_self()
        .map_err(ll("landlock restrict_self"))?;
    if status.ruleset != RulesetStatus::FullyEnforced || !status.no_new_privs {
        return Err(LaunchError::Check {
            step: "landlock restrict_self".into(),
            detail: format!(
                "ruleset {:?}, no_new_privs {}",
                status.ruleset, status.no_new_privs
            ),
        });
    }
    let mut layers = vec!["landlock-fs"];
    if abi >= 4 {
        layers.push("landlock-net");
    }
    if abi >= 6 {
        layers.push("landlock-scope");
    }
    Ok(layers)
}
