//! Step 5: the task's root filesystem. Its read-only part is a template
//! ([`build_template`], kept by the spawner in a mount namespace of its
//! own, see `template.rs`); the spawner makes each task a private copy of
//! that namespace with the task's tmpfs ([`make_task_root`]), and the
//! task's init adds its scratch dir and /proc ([`per_task`]).
//!
//! The task does not see the host's root. It gets a new root: an empty
//! tmpfs (read-only once built) holding only
//! - the policy's read-only paths and the executables, bind-mounted
//!   read-only, `nosuid,nodev` (their submounts too), at their host paths
//!   (the symlinks on the way
//!   to them are copied, so `/lib64/ld-linux-x86-64.so.2` resolves as on the
//!   host, and so do the host's top-level links such as `/lib -> usr/lib`);
//! - the scratch dir at its usual path, in a tmpfs of its own mounted on the
//!   scratch root, sized by the plan, read-write, `nosuid,nodev,noexec`
//!   (`scratch.rs`): a task cannot
//!   execute, or load through the dynamic loader (`mmap(PROT_EXEC)` fails
//!   on noexec), anything it wrote, nor fill the host's disk;
//! - `/tmp` and `/dev/shm`: fresh tmpfs, bounded by the plan's `tmp_bytes`,
//!   `nosuid,nodev,noexec`;
//! - `/dev`: a read-only tmpfs (`nosuid,noexec`) with the nodes `null`,
//!   `zero`, `full` (0666), `random`, `urandom` (0444), and `/dev/fd`,
//!   `/dev/std{in,out,err}` links;
//! - `/proc`: a new procfs of the task's pid namespace, `subset=pid`.
//!
//! Why: Landlock (ABI 7) does not cover connecting to a Unix socket by path,
//! `stat`, or path walks. Whatever is not in the new root — other tasks'
//! scratch dirs, airlockd's socket, host daemons' sockets, /var/tmp, /run,
//! /sys — cannot be named at all. Landlock then still decides what of the
//! new root may be read, written or executed.
//!
//! Every mount is first made a slave (`MS_SLAVE|MS_REC`): nothing propagates
//! to the host. The template is entered with `pivot_root(".", ".")`, the old
//! root detached (pivot_root(2), NOTES), and everything left made private:
//! nothing a task mounts in its copy reaches the template or other tasks. See mount(2),
//! mount_namespaces(7), tmpfs(5), proc(5).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::plan::LaunchPlan;
use super::{io, sys, LaunchError};

pub(crate) const HARDENED: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Where the new root is assembled before `pivot_root`. Any directory of the
/// host root works: it is shadowed only inside this mount namespace.
const STAGING: &str = "/tmp";

/// Device nodes every task gets: name, minor number (major 1, the memory
/// devices), and mode. random and urandom are read-only.
const DEVICES: [(&str, u64, u32); 5] = [
    ("null", 3, 0o666),
    ("zero", 5, 0o666),
    ("full", 7, 0o666),
    ("random", 8, 0o444),
    ("urandom", 9, 0o444),
];

/// What a template root holds: the same for every task of one policy and
/// one set of executables.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateSpec {
    /// The policy's read-only paths.
    pub read_only: Vec<PathBuf>,
    /// The task's executables.
    pub executables: Vec<PathBuf>,
    /// Where scratch dirs live; the task's scratch tmpfs is mounted here.
    pub scratch_root: PathBuf,
}

impl TemplateSpec {
    /// The template a plan needs.
    pub fn of(plan: &LaunchPlan) -> Self {
        Self {
            read_only: plan.read_only.clone(),
            executables: plan.executables.clone(),
            scratch_root: plan
                .scratch
                .parent()
                .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
        }
    }
}

/// Builds a template root and makes it this mount namespace's root (the
/// caller has just unshared one). Each task gets a private copy of this
/// namespace with only its own writable filesystems added
/// ([`make_task_root`], [`per_task`]).
///
/// The order keeps mount calls few (each costs tens of µs, and again when
/// the namespace is torn down): every directory, node and mount point is made
/// first, the host paths are bound, then one recursive `mount_setattr` makes
/// the whole tree read-only, `nosuid` and `nodev` (submounts of the bound
/// paths included) and one more lets `/dev`'s nodes work. Every mount ends
/// up private: what a task mounts in its copy never reaches the template.
pub fn build_template(spec: &TemplateSpec) -> Result<(), LaunchError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(sys("make mounts slave"))?;
    let root = Path::new(STAGING);
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,nr_inodes=4096,mode=755"),
    )
    .map_err(sys("mount the new root"))?;
    let mut tree = NewRoot {
        root,
        bound: Vec::new(),
    };
    tree.copy_top_level_links()?;
    make_dev(&root.join("dev"))?;
    for path in &spec.read_only {
        tree.bind(path)?;
    }
    for path in &spec.executables {
        tree.bind(path)?;
    }
    tree.plain_dirs(&spec.scratch_root)?;
    for dir in ["tmp", "proc"] {
        std::fs::create_dir_all(root.join(dir)).map_err(io(format!("create /{dir}")))?;
    }
    use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    crate::sys::mount_setattr(
        root,
        true,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        0,
    )
    .map_err(sys("make the new root read-only, nosuid and nodev"))?;
    crate::sys::mount_setattr(
        &root.join("dev"),
        false,
        MOUNT_ATTR_NOEXEC,
        MOUNT_ATTR_NODEV,
    )
    .map_err(sys("let the nodes of /dev work"))?;
    nix::unistd::chdir(root).map_err(sys("enter the new root"))?;
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the template's mounts private"))?;
    Ok(())
}

/// What a task's mount namespace holds before its own dir, files and
/// /proc (a copy of its template's, with fresh tmpfs sized by the policy),
/// and what its Landlock ruleset holds before the rules on those two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRootSpec {
    /// The template ([`super::template::Template::id`]), which also says
    /// where the scratch tmpfs goes (its scratch root).
    pub template: u64,
    /// The scratch tmpfs's size.
    pub scratch_bytes: u64,
    /// The size of /tmp's and /dev/shm's.
    pub tmp_bytes: u64,
    /// The Landlock ABI the ruleset is made for (0: none).
    pub landlock_abi: i32,
    /// The TCP ports the task may connect to (on the host's network).
    pub connect_tcp: Vec<u16>,
}

impl TaskRootSpec {
    /// What `plan` needs, in a copy of the template `template`.
    pub fn of(plan: &LaunchPlan, template: u64) -> Self {
        Self {
            template,
            scratch_bytes: plan.scratch_bytes.max(4096),
            tmp_bytes: plan.tmp_bytes.max(4096),
            landlock_abi: plan.landlock_abi,
            connect_tcp: match &plan.network {
                super::plan::NetPlan::Host { connect_tcp } => connect_tcp.clone(),
                super::plan::NetPlan::None => Vec::new(),
            },
        }
    }
}

/// What the spawner makes for one task ([`make_task_root`]).
pub struct TaskRoot {
    /// The task's mount namespace.
    pub mounts: std::os::fd::OwnedFd,
    /// Its Landlock ruleset, but for the init's two rules.
    pub ruleset: Option<super::landlock::TaskRuleset>,
}

/// The spawner's own mount namespace, root and working directory, to which
/// it returns after making a task's (joining a mount namespace moves both
/// to that namespace's root, which would undo a chroot airlockd runs in),
/// and the host's /proc, through which it names the namespace it made (the
/// task's /proc is mounted later, by the task's init).
pub struct Home {
    ns: std::fs::File,
    root: std::os::fd::OwnedFd,
    cwd: std::os::fd::OwnedFd,
    proc: std::fs::File,
}

impl Home {
    /// The calling process's mount namespace, root, working directory and
    /// /proc.
    pub fn here() -> Result<Self, LaunchError> {
        use nix::fcntl::{open, OFlag};
        let path = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mode = nix::sys::stat::Mode::empty();
        Ok(Self {
            ns: std::fs::File::open("/proc/self/ns/mnt")
                .map_err(super::io("open our mount namespace"))?,
            root: open("/", path, mode).map_err(sys("open our root"))?,
            cwd: open(".", path, mode).map_err(sys("open our working directory"))?,
            proc: std::fs::File::open("/proc").map_err(super::io("open /proc"))?,
        })
    }

    /// Back into our namespace, root and working directory.
    fn go_back(&self) -> nix::Result<()> {
        use nix::sched::{setns, CloneFlags};
        setns(&self.ns, CloneFlags::CLONE_NEWNS)?;
        nix::unistd::fchdir(&self.root)?;
        nix::unistd::chroot(".")?;
        nix::unistd::fchdir(&self.cwd)
    }
}

/// Makes a task's mount namespace and Landlock ruleset, for the spawner
/// (single-threaded, so that it may change mount namespaces): joins the
/// template's namespace, unshares a private copy, mounts the task's tmpfs
/// in it ([`task_tmpfs`]), makes the ruleset there
/// ([`super::landlock::prepare`]) and returns to `home`. The task's init
/// joins the namespace as it is and adds only its scratch dir and files
/// and its /proc ([`per_task`]), and the rules on those two. The spawner
/// makes one for each task, and most while idle, ahead of the request
/// (the copy and three mounts cost a task's start about 50 µs, the
/// ruleset about 40 µs).
///
/// Exits the process when it cannot return home: a spawner left in a
/// task's namespace would build every later task from there (airlockd
/// starts another).
pub fn make_task_root(
    spec: &TaskRootSpec,
    template: &super::template::Template,
    home: &Home,
) -> Result<TaskRoot, LaunchError> {
    use nix::sched::{setns, unshare, CloneFlags};
    setns(&template.ns, CloneFlags::CLONE_NEWNS).map_err(sys("join the template root"))?;
    let made = unshare(CloneFlags::CLONE_NEWNS)
        .map_err(sys("copy the template root"))
        .and_then(|()| task_tmpfs(spec, &template.spec.scratch_root))
        .and_then(|()| {
            let ruleset = super::landlock::prepare(spec.landlock_abi, &spec.connect_tcp, template)?;
            let mounts = nix::fcntl::openat(
                &home.proc,
                "self/ns/mnt",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(sys("open the task's mount namespace"))?;
            Ok(TaskRoot { mounts, ruleset })
        });
    if let Err(errno) = home.go_back() {
        eprintln!("airlock-launch: cannot return to its own mount namespace ({errno}); exiting");
        std::process::exit(1)
    }
    made
}

/// In a fresh copy of a template's namespace: the scratch tmpfs on the
/// scratch root (`scratch.rs`), fresh tmpfs on /tmp and /dev/shm.
fn task_tmpfs(spec: &TaskRootSpec, scratch_root: &Path) -> Result<(), LaunchError> {
    super::scratch::mount_on(scratch_root, spec.scratch_bytes)?;
    let tmpfs_options = format!("size={},nr_inodes=16384,mode=1777", spec.tmp_bytes);
    for dir in ["/tmp", "/dev/shm"] {
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            HARDENED,
            Some(tmpfs_options.as_str()),
        )
        .map_err(sys(format!("mount tmpfs on {dir}")))?;
    }
    Ok(())
}

/// In the task's mount namespace, made by the spawner: the task's scratch
/// dir (with its credential files) and a procfs of the task's pid
/// namespace, which only a process in it can mount.
pub fn per_task(plan: &LaunchPlan) -> Result<(), LaunchError> {
    super::scratch::make_dir(plan)?;
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        HARDENED,
        Some("subset=pid"),
    )
    .map_err(sys("mount /proc"))?;
    Ok(())
}

/// A small tmpfs on `dev` with the device nodes (made, not bound from the
/// host: no mount each), the `/dev/shm` mount point and the fd links.
fn make_dev(dev: &Path) -> Result<(), LaunchError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    std::fs::create_dir(dev).map_err(io("create /dev"))?;
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,nr_inodes=64,mode=755"),
    )
    .map_err(sys("mount /dev"))?;
    for (name, minor, mode) in DEVICES {
        let node = dev.join(name);
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::makedev(1, minor),
        )
        .map_err(sys(format!("make /dev/{name}")))?;
        // mknod applies the umask; the mode must be exact.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &node,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(sys(format!("chmod /dev/{name}")))?;
    }
    std::fs::create_dir(dev.join("shm")).map_err(io("create /dev/shm"))?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(io(format!("link /dev/{link}")))?;
    }
    Ok(())
}

/// The new root being assembled.
struct NewRoot<'a> {
    root: &'a Path,
    /// Host paths already bind-mounted (covering everything below them).
    bound: Vec<PathBuf>,
}

impl NewRoot<'_> {
    /// Copies the host root's symlinks (`/bin -> usr/bin`, `/lib64 ->
    /// usr/lib64`, ...) so paths such as those in `ld.so.cache` resolve.
    fn copy_top_level_links(&mut self) -> Result<(), LaunchError> {
        let entries = std::fs::read_dir("/").map_err(io("read /"))?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                let target = std::fs::read_link(entry.path()).map_err(io("read a link of /"))?;
                symlink(&target, self.root.join(entry.file_name()))
                    .map_err(io(format!("link /{}", entry.file_name().to_string_lossy())))?;
            }
        }
        Ok(())
    }

    /// Creates `path` in the new root as plain directories, for a mount that
    /// does not come from the host (the scratch tmpfs), and returns it. It
    /// must not lie in a bound host path (the directory would be made on the
    /// host, or fail on a read-only mount) nor cross a copied symlink.
    fn plain_dirs(&self, path: &Path) -> Result<PathBuf, LaunchError> {
        let step = format!("make the mount point {}", path.display());
        let mut inside = self.root.to_path_buf();
        let mut host = PathBuf::from("/");
        for name in path.components() {
            let Component::Normal(name) = name else {
                continue;
            };
            host.push(name);
            inside.push(name);
            if let Some(b) = self.bound.iter().find(|b| host.starts_with(b)) {
                return Err(LaunchError::Check {
                    step,
                    detail: format!(
                        "{} lies inside the read-only path {}: move sandbox.scratch_root out of \
                         every read_only path",
                        path.display(),
                        b.display()
                    ),
                });
            }
            match std::fs::symlink_metadata(&inside) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(LaunchError::Check {
                        step,
                        detail: format!(
                            "{} crosses the symlink {}: set sandbox.scratch_root to a path of \
                             plain directories",
                            path.display(),
                            host.display()
                        ),
                    })
                }
                Err(_) => std::fs::create_dir(&inside).map_err(io(step.clone()))?,
            }
        }
        Ok(inside)
    }

    /// Makes `host` (a path as the host sees it) visible at the same path in
    /// the new root; [`setup`] makes it read-only afterwards.
    fn bind(&mut self, host: &Path) -> Result<(), LaunchError> {
        let step = format!("mount {}", host.display());
        let Some((source, target)) = self.mount_point(host).map_err(io(step.clone()))? else {
            return Ok(()); // inside a path already mounted
        };
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(step))?;
        self.bound.push(source);
        Ok(())
    }

    /// Walks `host` component by component on the host, recreating each
    /// directory and copying each symlink into the new root, and creates the
    /// mount point for the final file or directory. Returns the resolved host
    /// path and the mount point, or `None` when the path lies inside one that
    /// is already mounted.
    fn mount_point(&self, host: &Path) -> std::io::Result<Option<(PathBuf, PathBuf)>> {
        let mut todo: VecDeque<OsString> = components(host).collect();
        let mut resolved = PathBuf::from("/");
        let mut links = 0;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                resolved.pop();
                continue;
            }
            let next = resolved.join(&name);
            if self.bound.iter().any(|b| next.starts_with(b)) {
                return Ok(None);
            }
            let inside = self.root.join(next.strip_prefix("/").unwrap_or(&next));
            let meta = std::fs::symlink_metadata(&next)?;
            if meta.file_type().is_symlink() {
                links += 1;
                if links > 40 {
                    return Err(std::io::Error::other("too many levels of symbolic links"));
                }
                let target = std::fs::read_link(&next)?;
                if std::fs::symlink_metadata(&inside).is_err() {
                    symlink(&target, &inside)?;
                }
                if target.is_absolute() {
                    resolved = PathBuf::from("/");
                }
                for part in components(&target).rev() {
                    todo.push_front(part);
                }
            } else if todo.is_empty() {
                if meta.is_dir() {
                    std::fs::create_dir_all(&inside)?;
                } else if std::fs::symlink_metadata(&inside).is_err() {
                    std::fs::File::create(&inside)?;
                }
                return Ok(Some((next, inside)));
            } else {
                if std::fs::symlink_metadata(&inside).is_err() {
                    std::fs::create_dir(&inside)?;
                }
                resolved = next;
            }
        }
        Ok(None)
    }
}

/// The normal and `..` components of a path (`/` and `.` dropped).
fn components(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}
