//! End-to-end suite: every test starts a real `airlockd` (as root, with the
//! real kernel sandbox) and drives it over its Unix socket. Tenant code is
//! Python run by the allowlisted `/usr/bin/python3`, as in the threat model.
//!
//! Without root these tests skip with a printed reason; `REQUIRE_PRIVILEGED=1`
//! (set by `scripts/test` and CI) turns that into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod credentials;
mod escape;
mod exec_allowlist;
mod isolation;
mod lifecycle;
mod limits;
mod network;
mod operators;
mod requests;
mod transport;
