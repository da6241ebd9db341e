//! The per-task uid pool. A uid is handed out to one task at a time and comes
//! back only after purge found no process of it left; uids come back at the
//! end of the queue, so a released uid is the last to be reused.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Free uids of the policy's pool.
pub struct UidPool {
    free: Mutex<VecDeque<u32>>,
}

impl UidPool {
    /// A pool of `count` uids from `first`.
    pub fn new(first: u32, count: u32) -> Self {
        Self {
            free: Mutex::new((first..first.saturating_add(count)).collect()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u32>> {
        match self.free.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Takes `uid` out of the pool for good (something of it survives).
    pub fn quarantine(&self, uid: u32) {
        self.lock().retain(|u| *u != uid);
    }

    /// Takes a free uid, or None when every uid is in use.
    pub fn allocate(&self) -> Option<u32> {
        self.lock().pop_front()
    }

    /// Returns a uid that no process holds any more.
    pub fn release(&self, uid: u32) {
        self.lock().push_back(uid);
    }

    /// How many uids are free.
    pub fn free(&self) -> usize {
        self.lock().len()
    }
}
