//! Step 8b: groups, gid, uid, in that order (youki `set_id`): the task runs
//! as its per-task uid with gid = uid and no supplementary groups. Without
//! `SECBIT_KEEP_CAPS`, leaving uid 0 empties the permitted and effective
//! capability sets. See setresuid(2), setgroups(2).

use nix::unistd::{getresgid, getresuid, setgroups, setresgid, setresuid, Gid, Uid};

use super::{sys, LaunchError};

/// Switches to `uid`/`uid` for good and checks it.
pub fn switch(uid: u32) -> Result<(), LaunchError> {
    let (u, g) = (Uid::from_raw(uid), Gid::from_raw(uid));
    setgroups(&[]).map_err(sys("setgroups"))?;
    setresgid(g, g, g).map_err(sys("setresgid"))?;
    setresuid(u, u, u).map_err(sys("setresuid"))?;
    let ru = getresuid().map_err(sys("getresuid"))?;
    let rg = getresgid().map_err(sys("getresgid"))?;
    let groups = nix::unistd::getgroups().map_err(sys("getgroups"))?;
    if [ru.real, ru.effective, ru.saved] != [u; 3]
        || [rg.real, rg.effective, rg.saved] != [g; 3]
        || !groups.is_empty()
    {
        return Err(LaunchError::Check {
            step: "switch uid".into(),
            detail: format!("ids are {ru:?} {rg:?} groups {groups:?}, expected {uid}"),
        });
    }
    Ok(())
}
