//! Step 8a: capabilities. The inheritable and ambient sets are cleared and
//! the bounding set dropped while `CAP_SETPCAP` is still held (nsjail
//! `caps.cc`); the uid switch (`ids`) then empties permitted and effective.
//! [`assert_none`] reads every set back. See capabilities(7).

use caps::CapSet;

use super::LaunchError;

fn caps_err(step: &str) -> impl FnOnce(caps::errors::CapsError) -> LaunchError + '_ {
    move |err| LaunchError::Check {
        step: step.to_string(),
        detail: err.to_string(),
    }
}

/// Clears inheritable and ambient, drops the whole bounding set.
pub fn drop_all() -> Result<(), LaunchError> {
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("clear inheritable capabilities"))?;
    caps::clear(None, CapSet::Ambient).map_err(caps_err("clear ambient capabilities"))?;
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("drop bounding capabilities"))?;
    }
    Ok(())
}

/// Fails unless every capability set of this thread is empty.
pub fn assert_none() -> Result<(), LaunchError> {
    for set in [
        CapSet::Effective,
        CapSet::Permitted,
        CapSet::Inheritable,
        CapSet::Ambient,
        CapSet::Bounding,
    ] {
        let held = caps::read(None, set).map_err(caps_err("read capabilities"))?;
        if !held.is_empty() {
            return Err(LaunchError::Check {
                step: "drop capabilities".into(),
                detail: format!("{set:?} set still holds {held:?}"),
            });
        }
    }
    Ok(())
}
