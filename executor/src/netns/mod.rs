//! Network namespaces: one of its own for every live task, taken from a
//! pool that airlockd fills ahead. Tasks without network get an empty one
//! (only a down loopback), reused; tasks on the network get one wired to
//! the worker ([`host`]), used once.
//!
//! Why one per task: tasks sharing a network namespace see each other's
//! sockets in `/proc/self/net` (abstract Unix socket names, TCP and UDP
//! ports), and can reach each other's abstract sockets unless Landlock's
//! scope stops them. Why a pool: a fresh namespace costs about 0.6 ms on the
//! spawn path and its asynchronous teardown costs more (a fresh one per task
//! halved throughput), while joining an existing one costs about 0.07 ms.
//!
//! A namespace is leased to one live task at a time and goes back to the
//! pool only after that task's init was reaped (the kernel has then killed
//! every process of the task's pid namespace), or purge found no process of
//! its uid; otherwise it is dropped, and the kernel frees it when its last
//! user goes. Before reuse [`NetnsPool::give_back`] also checks that no
//! socket is left in the namespace, and drops it if one is.
//!
//! What could survive in a reused namespace, as an attacker sees it:
//! - sockets: a socket lives while an fd or an in-flight `SCM_RIGHTS`
//!   message holds it. Every process of the task is dead, and no process
//!   outside it could have received an fd: the task's only peers are its own
//!   processes (no other tenant shares its root, /tmp, or this namespace's
//!   abstract sockets; seccomp refuses every family but `AF_UNIX`). A socket
//!   left in flight in a garbage cycle is counted until the kernel's unix
//!   GC frees it: the emptiness check drops such a namespace instead.
//! - interfaces, addresses, routes, netfilter, sysctls under
//!   `/proc/sys/net`: changing any needs `CAP_NET_ADMIN` in the user
//!   namespace owning this one, the initial one, and tasks hold no
//!   capability; netlink sockets are refused by seccomp and the task's
//!   `/proc` has no `sys`. `lo` stays down.
//! - nothing else is per network namespace that an unprivileged process can
//!   change and another can read.
//!
//! Namespaces are made by a short-lived thread (`unshare(CLONE_NEWNET)`
//! affects only the calling thread) and kept alive by an open fd; launchers
//! open them through `/proc/<airlockd>/fd/<n>`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::sched::{setns, unshare, CloneFlags};

pub mod host;
mod rtnl;

/// Namespaces airlockd makes ahead at start-up (more are made when they run
/// out), and most wired ones it keeps free.
pub const AHEAD: usize = 16;

/// Free network namespaces: empty ones, and ones wired to the host.
pub struct NetnsPool {
    free: Mutex<Vec<File>>,
    wired: Mutex<Vec<NetnsLease>>,
    /// Most namespaces kept free (more are made on demand and dropped).
    keep: usize,
}

/// One task's network namespace; give it back with [`NetnsPool::give_back`]
/// or drop it. A wired one's veth pair is deleted when the lease goes.
#[derive(Debug)]
pub struct NetnsLease {
    /// Dropped first (fields drop in order): the pair is deleted by name
    /// while the namespace still holds its end, so the name cannot have
    /// gone to another airlockd's pair meanwhile.
    wiring: Option<host::Wiring>,
    file: File,
}

impl NetnsLease {
    /// The task's address, for a namespace wired to the host.
    pub fn addr(&self) -> Option<std::net::Ipv4Addr> {
        self.wiring.as_ref().map(|w| w.addr)
    }

    /// A path that opens the namespace, for the launch plan.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.file.as_raw_fd()
        ))
    }
}

impl NetnsPool {
    /// A pool holding `empty` fresh empty namespaces and `wired` ones wired
    /// to the host (which needs [`host::setup`] first), keeping at most
    /// `keep` empty ones and [`AHEAD`] wired ones (each is a veth pair on the
    /// host).
    pub fn new(empty: usize, wired: usize, keep: usize) -> std::io::Result<Self> {
        Ok(Self {
            free: Mutex::new(create(empty)?),
            wired: Mutex::new(
                (0..wired)
                    .map(|_| wired_lease())
                    .collect::<Result<_, _>>()?,
            ),
            keep,
        })
    }

    /// An empty namespace for one task: a free one, or a fresh one when none
    /// is.
    pub fn take(&self) -> std::io::Result<NetnsLease> {
        if let Some(file) = lock(&self.free).pop() {
            return Ok(NetnsLease { wiring: None, file });
        }
        let file = create(1)?
            .pop()
            .ok_or_else(|| std::io::Error::other("no network namespace made"))?;
        Ok(NetnsLease { wiring: None, file })
    }

    /// A namespace wired to the host for one task: a free one, or a fresh
    /// one when none is (this sets the host up the first time).
    pub fn take_wired(&self) -> std::io::Result<NetnsLease> {
        if let Some(free) = lock(&self.wired).pop() {
            return Ok(free);
        }
        host::setup().map_err(std::io::Error::other)?;
        wired_lease()
    }

    /// Returns a namespace whose task has ended and whose processes are all
    /// gone (the caller's guarantee), without waiting. An empty one is
    /// checked by the checker thread and reused only if no socket is left
    /// in it; otherwise it is dropped. A wired one is never reused: the
    /// retiring thread (in the host's namespaces) deletes its veth pair
    /// and makes a fresh one for the pool in its place, one at a time.
    pub fn give_back(self: &Arc<Self>, lease: NetnsLease) {
        let pool = self.clone();
        match lease.wiring {
            Some(_) => RETIRER.run(Box::new(move || pool.retire_wired(lease))),
            None => CHECKER.run(Box::new(move || {
                let checked = check_sockets(&lease.file);
                pool.reuse_if_empty(lease.file, checked);
            })),
        }
    }

    /// Deletes a wired namespace's veth pair (with the lease) and makes a
    /// fresh one ahead in its place (on one thread at a time: the check
    /// and the push cannot interleave with another retirement's).
    fn retire_wired(&self, lease: NetnsLease) {
        drop(lease);
        if lock(&self.wired).len() < AHEAD {
            match wired_lease() {
                Ok(fresh) => lock(&self.wired).push(fresh),
                Err(err) => tracing::warn!(%err, "could not make a network namespace ahead"),
            }
        }
    }

    /// Pools an empty namespace that was checked to hold no socket.
    fn reuse_if_empty(&self, file: File, checked: std::io::Result<Option<u64>>) {
        match checked {
            Ok(None) => {
                let mut free = lock(&self.free);
                if free.len() < self.keep {
                    free.push(file);
                }
            }
            Ok(Some(sockets)) => {
                tracing::warn!(
                    sockets,
                    "a task's network namespace still holds sockets after the task ended; dropped, not reused"
                );
            }
            Err(err) => {
                tracing::warn!(
                    ?err,
                    "could not check a task's network namespace; dropped, not reused"
                );
            }
        }
    }

    /// Free empty namespaces now.
    pub fn free(&self) -> usize {
        lock(&self.free).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A fresh namespace wired to the host.
fn wired_lease() -> std::io::Result<NetnsLease> {
    let (file, wiring) = host::create()?;
    Ok(NetnsLease {
        wiring: Some(wiring),
        file,
    })
}

/// Runs `f` on a short-lived thread of its own: namespace changes affect
/// only the calling thread, and airlockd's threads must stay in the host's.
fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    std::thread::spawn(f)
        .join()
        .map_err(|_| std::io::Error::other("network namespace thread panicked"))?
}

/// Makes `n` empty network namespaces in a short-lived thread.
fn create(n: usize) -> std::io::Result<Vec<File>> {
    on_own_thread(move || {
        (0..n)
            .map(|_| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                File::open("/proc/thread-self/ns/net")
            })
            .collect()
    })
}

/// Work for one of the pool's threads.
type Job = Box<dyn FnOnce() + Send>;

/// A long-lived thread that runs jobs one after another, started on first
/// use (from one of airlockd's threads, so in the host's namespaces) and
/// again, once, should it have died.
struct Worker(Mutex<Option<std::sync::mpsc::Sender<Job>>>);

/// Checks ended tasks' empty namespaces: it joins each in turn and never
/// needs the host's again, so airlockd's other threads stay in theirs. One
/// thread for all checks: a thread per check cost a `clone` and an exit on
/// every task's end.
static CHECKER: Worker = Worker(Mutex::new(None));

/// Retires wired namespaces (their veth pairs are deleted and fresh ones
/// made, in the host's network namespace, which it never leaves).
static RETIRER: Worker = Worker(Mutex::new(None));

impl Worker {
    /// Runs `job` on this worker. A job that finds no worker (it could not
    /// be started) is dropped, and with it what it holds.
    fn run(&self, job: Job) {
        let mut job = job;
        let mut worker = lock(&self.0);
        for _ in 0..2 {
            if worker.is_none() {
                let (sender, jobs) = std::sync::mpsc::channel::<Job>();
                let started = std::thread::Builder::new()
                    .name("airlock-netns".into())
                    .spawn(move || {
                        for job in jobs {
                            job();
                        }
                    });
                match started {
                    Ok(_) => *worker = Some(sender),
                    Err(err) => {
                        tracing::warn!(%err, "could not start a network namespace thread");
                        break;
                    }
                }
            }
            let Some(sender) = worker.as_ref() else { break };
            match sender.send(job) {
                Ok(()) => return,
                Err(std::sync::mpsc::SendError(back)) => {
                    job = back;
                    *worker = None;
                }
            }
        }
        drop(worker);
        // Dropped here, with the namespace it holds, never reused.
        drop(job);
    }
}

/// How many sockets are left in `ns`, if any, on the calling thread,
/// which joins `ns` for good. `sockets: used` of the namespace's sockstat
/// counts every socket a process made there, of every family, until the
/// kernel frees it (a socket held only by an in-flight `SCM_RIGHTS`
/// message included); one read, where listing `/proc/net/unix` walks the
/// namespace's whole hash table (and `tcp` or `udp` cost about 1.7 ms
/// each, empty).
fn check_sockets(ns: &File) -> std::io::Result<Option<u64>> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
    let stat = std::fs::read_to_string("/proc/thread-self/net/sockstat")?;
    let used = stat
        .lines()
        .find_map(|line| line.strip_prefix("sockets: used "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .ok_or_else(|| std::io::Error::other("no \"sockets: used\" line in sockstat"))?;
    Ok((used > 0).then_some(used))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Runs `job` on `worker` and waits for it: every job given to it
    /// before is done then.
    fn on<T: Send + 'static>(worker: &Worker, job: impl FnOnce() -> T + Send + 'static) -> T {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        worker.run(Box::new(move || {
            let _ = reply.send(job());
        }));
        answer.recv().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn namespaces_are_reused_only_when_empty() {
        if !root() {
            return;
        }
        let pool = Arc::new(NetnsPool::new(1, 0, 4).unwrap_or_else(|e| panic!("{e}")));
        let a = pool.take().unwrap_or_else(|e| panic!("{e}"));
        // Dry: a fresh one, not the same.
        let b = pool.take().unwrap_or_else(|e| panic!("{e}"));
        let ino = |l: &NetnsLease| {
            std::fs::metadata(l.path()).map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        };
        assert_ne!(ino(&a).ok(), ino(&b).ok());
        // A socket bound in `a` (an abstract name, as a task would) keeps it
        // out of the pool.
        let fd = a.file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let sock = std::thread::spawn(move || {
            setns(&fd, CloneFlags::CLONE_NEWNET).ok()?;
            let addr = nix::sys::socket::UnixAddr::new_abstract(b"airlock-netns-test").ok()?;
            let s = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
                None,
            )
            .ok()?;
            nix::sys::socket::bind(s.as_raw_fd(), &addr).ok()?;
            Some(s)
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("bind in the namespace"));
        let ns = a.file.try_clone().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(on(&CHECKER, move || check_sockets(&ns).ok()), Some(Some(1)));
        pool.give_back(a);
        on(&CHECKER, || ());
        assert_eq!(pool.free(), 0, "a namespace with a socket was pooled");
        drop(sock);
        // An empty one goes back and is handed out again.
        let b_ino = ino(&b).ok();
        pool.give_back(b);
        on(&CHECKER, || ());
        assert_eq!(pool.free(), 1);
        let c = pool.take().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ino(&c).ok(), b_ino, "the free namespace is reused");
    }

    #[test]
    fn wired_namespaces_are_used_once_and_their_veth_pair_goes_with_them() {
        if !root() {
            return;
        }
        host::setup().unwrap_or_else(|e| panic!("{e}"));
        let pool = Arc::new(NetnsPool::new(0, 1, 4).unwrap_or_else(|e| panic!("{e}")));
        let lease = pool.take_wired().unwrap_or_else(|e| panic!("{e}"));
        let link = lease
            .wiring
            .as_ref()
            .map(|w| w.link.clone())
            .unwrap_or_default();
        let addr = lease.addr().unwrap_or_else(|| panic!("no address"));
        assert!(rtnl::index_of(&link).is_ok(), "{link} is on the host");
        assert_eq!(addr.octets()[..2], host::SUBNET.octets()[..2]);
        pool.give_back(lease);
        on(&RETIRER, || ());
        assert!(rtnl::index_of(&link).is_err(), "{link} outlived its task");
        // Made afresh in its place, with another address.
        let next = pool.take_wired().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(next.addr(), Some(addr));
    }
}
