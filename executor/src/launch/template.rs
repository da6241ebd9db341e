//! Template roots: the read-only part of a task's root, built once by the
//! spawner for each policy and set of executables, in a mount namespace of
//! its own. A task's init joins it and at once unshares a private copy
//! (`setns` + `unshare(CLONE_NEWNS)`), then mounts only what is its own:
//! scratch, /tmp, /dev/shm, /proc ([`super::mounts::per_task`]). Building
//! the tree (binds, mount points, links, device nodes) and tearing it down
//! per task cost about half a millisecond of a task's start.
//!
//! Every mount of a template is private and read-only, so tasks share its
//! superblocks without being able to write to them or see each other's
//! mounts. A template binds the files that were at its paths when it was
//! built: each use checks the device and inode behind every path again and
//! builds a new template when one changed (a replaced binary or library
//! directory), so a task sees the host as it is when it starts.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use nix::unistd::ForkResult;

use super::mounts::{build_template, TemplateSpec};
use super::plan::LaunchPlan;

/// Templates kept at once; the least recently used goes first.
const KEPT: usize = 16;

/// The spawner's templates.
#[derive(Default)]
pub struct Templates {
    by_spec: HashMap<TemplateSpec, (Stamps, File)>,
    used: VecDeque<TemplateSpec>,
}

impl Templates {
    /// The template namespace for `plan`, built now when there is none or
    /// a path behind the one there is now another file.
    pub fn get(&mut self, plan: &LaunchPlan) -> Result<&File, String> {
        let spec = TemplateSpec::of(plan);
        let stamps = stamps(&spec);
        let fresh = self
            .by_spec
            .get(&spec)
            .is_some_and(|(built, _)| *built == stamps);
        if !fresh {
            let ns = build(&spec)?;
            self.by_spec.insert(spec.clone(), (stamps, ns));
        }
        self.used.retain(|s| *s != spec);
        self.used.push_back(spec.clone());
        while self.used.len() > KEPT {
            if let Some(old) = self.used.pop_front() {
                self.by_spec.remove(&old);
            }
        }
        self.by_spec
            .get(&spec)
            .map(|(_, ns)| ns)
            .ok_or_else(|| "template vanished".to_string())
    }
}

/// Device and inode behind every path of a template (None: missing).
type Stamps = Vec<Option<(u64, u64)>>;

fn stamps(spec: &TemplateSpec) -> Stamps {
    spec.read_only
        .iter()
        .chain(&spec.executables)
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
        .collect()
}

/// Builds a template in a child that unshares a mount namespace; returns
/// that namespace (the child exits once it is opened).
fn build(spec: &TemplateSpec) -> Result<File, String> {
    let (mut ready_r, ready_w) = pipe()?;
    let (release_r, release_w) = pipe()?;
    match super::fork_child().map_err(|e| super::error_chain(&e))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(release_w);
            let mut ready = ready_w;
            let outcome = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare the mount namespace: {e}"))
                .and_then(|()| build_template(spec).map_err(|e| super::error_chain(&e)));
            let message = match outcome {
                Ok(()) => String::new(),
                Err(e) => e,
            };
            let _ = ready.write_all(message.as_bytes());
            drop(ready);
            // Stay until the spawner has opened our namespace.
            let _ = { release_r }.read(&mut [0u8; 1]);
            std::process::exit(0)
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(release_r);
            let mut message = String::new();
            let _ = ready_r.read_to_string(&mut message);
            let ns = if message.is_empty() {
                File::open(format!("/proc/{child}/ns/mnt"))
                    .map_err(|e| format!("open the template's namespace: {e}"))
            } else {
                Err(message)
            };
            drop(release_w);
            let _ = nix::sys::wait::waitpid(child, None);
            ns
        }
    }
}

fn pipe() -> Result<(File, File), String> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    Ok((File::from(r), File::from(w)))
}
