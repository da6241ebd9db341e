//! Step 8a: capabilities. The spawner dropped the bounding set at start-up
//! ([`drop_bounding`] in `launch::main`; it refuses to run when it cannot),
//! so every init inherits it empty: the spawner never execs, so an empty
//! bounding set takes nothing from it (the set only limits what an exec may
//! gain and what `capset` may add to the inheritable set). Each init clears
//! the inheritable and ambient sets; the uid switch (`ids`) then empties
//! permitted and effective, and [`assert_none`] reads every set back (nsjail
//! `caps.cc`). Dropping a capability commits new credentials (about 1.3 µs
//! each, 41 of them); reading one costs a fifth of that. See
//! capabilities(7).

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

/// Drops every capability in the bounding set (the spawner, once).
pub fn drop_bounding() -> Result<(), LaunchError> {
    const STEP: &str = "drop bounding capabilities";
    for cap in caps::all() {
        if caps::has_cap(None, CapSet::Bounding, cap).map_err(caps_err(STEP))? {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err(STEP))?;
        }
    }
    Ok(())
}

/// Fails unless every capability set of this thread is empty.
pub fn assert_none() -> Result<(), LaunchError> {
    const STEP: &str = "read capabilities";
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        let held = caps::read(None, set).map_err(caps_err(STEP))?;
        if !held.is_empty() {
            return Err(still_held(set, held.into_iter().collect()));
        }
    }
    // One query per capability: `caps::read` of the ambient set would first
    // probe the bounding set for every capability the kernel knows.
    for set in [CapSet::Bounding, CapSet::Ambient] {
        let mut held = Vec::new();
        for cap in caps::all() {
            if caps::has_cap(None, set, cap).map_err(caps_err(STEP))? {
                held.push(cap);
            }
        }
        if !held.is_empty() {
            return Err(still_held(set, held));
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
