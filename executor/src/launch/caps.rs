//! Step 8a: capabilities. The spawner dropped the bounding set at start-up
//! ([`drop_bounding`] in `launch::main`; it refuses to run when it cannot),
//! so every init inherits it empty: the spawner never execs, so an empty
//! bounding set takes nothing from it (the set only limits what an exec may
//! gain and what `capset` may add to the inheritable set), and checked
//! empty by the spawner, once: a bounding set can only shrink. Each init
//! clears the inheritable and ambient sets; the uid switch (`ids`) then
//! empties permitted and effective, and [`assert_none`] reads those three
//! back (nsjail `caps.cc`), which also proves the ambient set empty: the
//! kernel keeps every ambient capability permitted and inheritable.
//! Dropping a capability commits new credentials (about 1.3 µs each, 41 of
//! them); reading one costs a fifth of that, and the bounding and ambient
//! sets are read one capability at a time. See capabilities(7).

use caps::{CapSet, Capability};

use super::LaunchError;

fn caps_err(step: &str) -> impl FnOnce(caps::errors::CapsError) -> LaunchError + '_ {
    move |err| LaunchError::Check {
        step: step.to_string(),
        detail: err.to_string(),
    }
}

/// Clears the inheritable and ambient sets.
pub fn drop_inheritable_and_ambient() -> Result<(), LaunchError> {
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clear inheritable capabilities"))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient capabilities"))
}

/// Drops every capability in the bounding set and checks that none is
/// left (the spawner, once: every init inherits the set).
pub fn drop_bounding() -> Result<(), LaunchError> {
    const STEP: &str = "drop bounding capabilities";
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).map_err(caps_err(STEP))? {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err(STEP))?;
        }
    }
    let mut held = Vec::new();
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).map_err(caps_err(STEP))? {
            held.push(cap);
        }
    }
    match held.is_empty() {
        true => Ok(()),
        false => Err(still_held(CapSet::Bounding, held)),
    }
}

/// Fails unless the effective, permitted and inheritable sets of this
/// thread are empty, and with them the ambient set (the kernel allows no
/// capability there that is not both permitted and inheritable). The
/// bounding set came empty from the spawner ([`drop_bounding`]).
pub fn assert_none() -> Result<(), LaunchError> {
    const STEP: &str = "read capabilities";
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        let held = caps::read(None, set).map_err(caps_err(STEP))?;
        if !held.is_empty() {
            return Err(still_held(set, held.into_iter().collect()));
        }
    }
    Ok(())
}

fn still_held(set: CapSet, mut held: Vec<Capability>) -> LaunchError {
    held.sort_by_key(|cap| cap.index());
    LaunchError::Check {
        step: "drop capabilities".into(),
        detail: format!("{set:?} set still holds {held:?}"),
    }
}
