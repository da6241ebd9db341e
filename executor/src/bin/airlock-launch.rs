//! `airlock-launch`: the per-task launcher airlockd execs; see
//! `airlock_executor::launch`. Not meant to be run by hand.

/// A task's init runs in the spawner's memory until its exec, and
/// allocates from an arena of its own meanwhile (see
/// `airlock_executor::launch::vfork`).
#[global_allocator]
static ALLOCATOR: airlock_executor::launch::vfork::LaunchAllocator =
    airlock_executor::launch::vfork::LaunchAllocator;

fn main() {
    airlock_executor::launch::main()
}
