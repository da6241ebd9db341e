//! How the spawner makes a task's init: `clone(CLONE_VM|CLONE_VFORK|
//! CLONE_NEWPID|CLONE_PIDFD)`, as `posix_spawn` does, on a stack of its
//! own. The child runs in the spawner's memory, and the spawner sleeps
//! until the child has exec'd the program (or exited). Nothing is copied:
//! a `fork` of the spawner cost about 110 µs here, and then a
//! copy-on-write fault for every page either process wrote (about 70 per
//! task), more than a task's whole sandbox setup. Measured against fork,
//! alternating builds: 18 % more tasks per second one at a time, and with
//! one spawner per core (airlockd starts several, [`crate::spawner`]) 30 %
//! more at concurrency 8.
//!
//! What a child in its parent's memory must not do, and how it is kept
//! from it:
//! - *Allocate from the parent's heap.* Killed inside `malloc` (airlockd
//!   cancels a task during its setup), it would leave the heap locked or
//!   corrupt; and what it allocates would never be freed. While a child
//!   runs, [`LaunchAllocator`], the global allocator of `airlock-launch`,
//!   hands out memory from an arena of its own (a bump pointer: no lock, no
//!   free list) and ignores frees; the spawner resets the arena when the
//!   child is gone. A free in the spawner of arena memory (which only a
//!   child could have put where the spawner finds it) aborts the spawner.
//!   The launcher calls no C library function that allocates.
//! - *Change what the spawner owns.* The child gets its plan, template and
//!   seccomp program as shared references or bitwise copies whose heap it
//!   never frees (frees are ignored), and changes no global state: the
//!   seccomp program comes ready, not from the spawner's cache and its
//!   lock.
//! - *Take a lock the spawner needs later, or leave std's state changed.*
//!   The child does not print, and the spawner's panic hook is silent (no
//!   stderr lock, no backtrace); errors are turned into text without
//!   `strerror`, which takes glibc's locale lock; std's lazily made
//!   current-thread handle is made by the spawner first; the child ends
//!   with `_exit`, which runs no exit handlers. Left: a child killed in
//!   the middle of a panic (a bug in the launcher) leaves std's panic count
//!   raised in the spawner.
//! - *Outgrow its stack.* The stack is 8 MiB with a guard page below it.
//! - *Leave secrets behind.* The arena's used part is zeroed when the
//!   child is gone.
//!
//! A side effect: the child's switch to the task's uid makes the shared
//! memory, and so the spawner, not dumpable (no core dumps of it; its
//! /proc files need CAP_SYS_PTRACE). The launcher must never set
//! `PR_SET_DUMPABLE`, which would apply to the spawner too.
//!
//! The child has its own descriptor table and signal handlers (no
//! `CLONE_FILES`, no `CLONE_SIGHAND`), so closing descriptors and
//! resetting signals in it leaves the spawner's alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Size of a child's stack.
const STACK: usize = 8 << 20;
/// Size of the arena a child allocates from (reserved, not committed: only
/// the pages a child touches take memory).
const ARENA: usize = 64 << 20;
const PAGE: usize = 4096;

/// Whether a vfork child runs (the spawner sleeps meanwhile).
static IN_CHILD: AtomicBool = AtomicBool::new(false);
static ARENA_START: AtomicUsize = AtomicUsize::new(0);
static ARENA_NEXT: AtomicUsize = AtomicUsize::new(0);

/// `airlock-launch`'s global allocator: the system allocator, except in a
/// vfork child (see the module's documentation).
pub struct LaunchAllocator;

// SAFETY: outside a child this is `System`. In a child, `alloc` returns
// fresh, suitably aligned memory of the arena (or null when it is full),
// which nothing else uses until the spawner resets the arena after the
// child is gone; `dealloc` does nothing.
unsafe impl GlobalAlloc for LaunchAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) {
            bump(layout)
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) {
            let ptr = bump(layout);
            if !ptr.is_null() {
                // SAFETY: `bump` returned `layout.size()` bytes of ours; an
                // earlier child may have left data in them.
                unsafe { std::ptr::write_bytes(ptr, 0, layout.size()) };
            }
            ptr
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if IN_CHILD.load(Ordering::Relaxed) {
            return;
        }
        if in_arena(ptr) {
            // A child's memory reached the spawner: a bug that would
            // corrupt it once the arena is reused. Stop here.
            std::process::abort();
        }
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if IN_CHILD.load(Ordering::Relaxed) || in_arena(ptr) {
            // SAFETY: the caller's contract; a valid layout for new_size.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: as for `alloc`.
            let new = unsafe { self.alloc(new_layout) };
            if !new.is_null() {
                // SAFETY: both blocks hold at least the smaller size.
                unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
                // SAFETY: as for `dealloc` (a no-op in a child).
                unsafe { self.dealloc(ptr, layout) };
            }
            new
        } else {
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

fn bump(layout: Layout) -> *mut u8 {
    let start = ARENA_START.load(Ordering::Relaxed);
    if start == 0 {
        return std::ptr::null_mut();
    }
    let next = ARENA_NEXT.load(Ordering::Relaxed);
    let aligned = (next + layout.align() - 1) & !(layout.align() - 1);
    match aligned.checked_add(layout.size()) {
        Some(end) if end <= start + ARENA => {
            ARENA_NEXT.store(end, Ordering::Relaxed);
            aligned as *mut u8
        }
        _ => std::ptr::null_mut(),
    }
}

fn in_arena(ptr: *mut u8) -> bool {
    let start = ARENA_START.load(Ordering::Relaxed);
    start != 0 && (start..start + ARENA).contains(&(ptr as usize))
}

/// Maps `size` bytes of private anonymous memory, reserved only.
fn map(size: usize) -> std::io::Result<usize> {
    // SAFETY: a new anonymous mapping; nothing else refers to its range.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(ptr as usize)
}

/// The spawner's means to start children: their stack and arena, made once.
pub struct Vfork {
    stack_top: usize,
}

impl Vfork {
    /// Maps the children's stack (with a guard page below it) and arena.
    pub fn new() -> std::io::Result<Self> {
        let stack = map(STACK + PAGE)?;
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(stack as *mut libc::c_void, PAGE, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let arena = map(ARENA)?;
        ARENA_START.store(arena, Ordering::Relaxed);
        ARENA_NEXT.store(arena, Ordering::Relaxed);
        Ok(Self {
            stack_top: stack + PAGE + STACK,
        })
    }

    /// Starts `child(arg)` as pid 1 of a new pid namespace, in our memory,
    /// and returns when it has exec'd or ended: its pid and a pidfd of it
    /// (made with it, so the pid cannot be reused before the pidfd
    /// exists). `child` must never return, and must keep to what the
    /// module's documentation lists.
    pub fn spawn<T>(
        &mut self,
        child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
        arg: &T,
    ) -> Result<(i32, OwnedFd), nix::errno::Errno> {
        let mut pidfd: libc::c_int = -1;
        let flags = libc::CLONE_NEWPID
            | libc::CLONE_PIDFD
            | libc::CLONE_VM
            | libc::CLONE_VFORK
            | libc::SIGCHLD;
        IN_CHILD.store(true, Ordering::Relaxed);
        // SAFETY: the stack is ours alone (the previous child is gone: with
        // CLONE_VFORK we return only after it exec'd or ended); `arg`
        // outlives the child's use of it, since we sleep until then; the
        // pidfd comes back through the parent_tid argument.
        let ret = unsafe {
            libc::clone(
                child,
                self.stack_top as *mut libc::c_void,
                flags,
                arg as *const T as *mut libc::c_void,
                &mut pidfd as *mut libc::c_int,
            )
        };
        IN_CHILD.store(false, Ordering::Relaxed);
        // What the child left in the arena (its argv and environment among
        // it) is wiped, not only forgotten.
        let start = ARENA_START.load(Ordering::Relaxed);
        let used = ARENA_NEXT.swap(start, Ordering::Relaxed) - start;
        // SAFETY: the arena's first `used` bytes, which no one uses now.
        unsafe { std::ptr::write_bytes(start as *mut u8, 0, used) };
        match ret {
            -1 => Err(nix::errno::Errno::last()),
            // SAFETY: the kernel just made this close-on-exec pidfd for us.
            pid => Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) })),
        }
    }
}
