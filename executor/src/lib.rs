//! Airlock's supervisor: the gRPC service, the sandbox launcher, purge and
//! audit. A task's path: [`service`] → [`admit`] → [`run`] (which starts
//! a [`launch`]er through the [`spawner`], the `airlock-launch` process) →
//! [`purge`] → [`audit`].
//! See `ARCHITECTURE.md`.

pub mod admit;
pub mod audit;
pub mod claim;
pub mod client;
pub mod credentials;
pub mod daemon;
pub mod exec_index;
pub mod launch;
pub mod netns;
pub mod pin;
pub mod purge;
pub mod reload;
pub mod run;
pub mod seccomp_bpf;
pub mod seccomp_profile;
pub mod service;
pub mod spawner;
pub mod supervisor;
pub mod sys;
pub mod uids;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
