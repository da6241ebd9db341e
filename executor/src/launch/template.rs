//! Template roots: the read-only part of a task's root, built once by the
//! spawner for each policy and set of executables, in a mount namespace of
//! its own. For each task the spawner makes a private copy of it, with the
//! task's tmpfs (scratch, /tmp, /dev/shm:
//! [`super::mounts::make_task_root`]), and the task's init adds only
//! its dir, files and /proc ([`super::mounts::per_task`]). Building
//! the tree (binds, mount points, links, device nodes) and tearing it down
//! per task cost about half a millisecond of a task's start.
//!
//! A template also keeps its files opened for Landlock (`O_PATH`, see
//! [`Opened`]): a rule names an inode, and a task's copy of the template
//! has the same inodes, so the spawner adds each task's rules with these
//! descriptors instead of walking every path again (about 3 µs each).
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
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nix::unistd::ForkResult;

use super::mounts::{build_template, TemplateSpec};
use super::plan::LaunchPlan;

/// Templates kept at once; the least recently used goes first.
const KEPT: usize = 16;

/// The spawner's templates.
#[derive(Default)]
pub struct Templates {
    by_spec: HashMap<TemplateSpec, (Stamps, Rc<Template>)>,
    used: VecDeque<TemplateSpec>,
}

/// One template: its mount namespace and its files opened for Landlock.
pub struct Template {
    /// Unique among the spawner's templates, a rebuilt one's included.
    pub id: u64,
    /// What it was built from.
    pub spec: TemplateSpec,
    /// The mount namespace.
    pub ns: File,
    /// The paths of the template's Landlock rules that every task sees as
    /// the template has them.
    pub opened: Vec<Opened>,
}

/// A path of the template, opened `O_PATH` in the template's root as the
/// init would open it in its copy (absolute links resolved inside the
/// root).
pub struct Opened {
    /// The path in the task's root.
    pub path: PathBuf,
    /// The descriptor.
    pub fd: OwnedFd,
    /// Whether it is a directory.
    pub is_dir: bool,
}

impl Templates {
    /// The template namespace for `plan`, built now when there is none or
    /// a path behind the one there is now another file.
    pub fn get(&mut self, plan: &LaunchPlan) -> Result<&Rc<Template>, String> {
        let spec = TemplateSpec::of(plan);
        let stamps = stamps(&spec);
        let fresh = self
            .by_spec
            .get(&spec)
            .is_some_and(|(built, _)| *built == stamps);
        if !fresh {
            let template = build(&spec)?;
            self.by_spec
                .insert(spec.clone(), (stamps, Rc::new(template)));
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
            .map(|(_, template)| template)
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
/// that namespace and the files opened in it (the child exits once they
/// are).
fn build(spec: &TemplateSpec) -> Result<Template, String> {
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
            let template = if message.is_empty() {
                File::open(format!("/proc/{child}/ns/mnt"))
                    .map_err(|e| format!("open the template's namespace: {e}"))
                    .map(|ns| Template {
                        id: next_id(),
                        spec: spec.clone(),
                        ns,
                        opened: open_in(child, spec),
                    })
            } else {
                Err(message)
            };
            drop(release_w);
            let _ = nix::sys::wait::waitpid(child, None);
            template
        }
    }
}

/// Opens the template's Landlock paths in the root of `child` (which is
/// in the template): the read-only paths, the executables and the device
/// nodes, except what a task's own mounts hide (under its /tmp, /dev/shm,
/// /proc or scratch root: the policy refuses paths under /proc, and the
/// others are missing in each task's fresh tmpfs). A path that does not
/// open here is opened again in each task's copy, which reports it.
fn open_in(child: nix::unistd::Pid, spec: &TemplateSpec) -> Vec<Opened> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let Ok(root) = File::open(format!("/proc/{child}/root")) else {
        return Vec::new();
    };
    let own_mounts = [
        Path::new("/tmp"),
        Path::new("/dev/shm"),
        Path::new("/proc"),
        spec.scratch_root.as_path(),
    ];
    let devices = super::landlock::DEVICES
        .iter()
        .map(|(path, _)| Path::new(path));
    let mut opened: Vec<Opened> = Vec::new();
    for path in spec
        .read_only
        .iter()
        .chain(&spec.executables)
        .map(PathBuf::as_path)
        .chain(devices)
    {
        if own_mounts.iter().any(|m| path.starts_with(m)) || opened.iter().any(|o| o.path == path) {
            continue;
        }
        let Ok(inside) = path.strip_prefix("/") else {
            continue;
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT);
        let Ok(fd) = openat2(&root, inside, how) else {
            continue;
        };
        let Ok(stat) = nix::sys::stat::fstat(&fd) else {
            continue;
        };
        opened.push(Opened {
            path: path.to_path_buf(),
            fd,
            is_dir: stat.st_mode & libc::S_IFMT == libc::S_IFDIR,
        });
    }
    opened
}

/// A template id never given before in this process.
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn pipe() -> Result<(File, File), String> {
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    Ok((File::from(r), File::from(w)))
}
