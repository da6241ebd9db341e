//! Airlock's supervisor: the gRPC service, the sandbox launcher, purge and
//! audit. See `ARCHITECTURE.md` for a task's path through these modules.

pub mod client;
pub mod launch;
pub mod seccomp_profile;
pub mod sys;
