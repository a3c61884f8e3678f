//! In-process serialisation per key, taken before the cross-process lock:
//! threads of one process wait on a condition variable instead of polling
//! the OS lock, and a store without a cross-process lock (a host store
//! without a lock callback) still excludes its own threads.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct LocalLocks {
    held: Mutex<HashSet<String>>,
    freed: Condvar,
}

/// Holds one key of a [`LocalLocks`]; dropping it frees the key.
#[derive(Debug)]
pub(crate) struct LocalGuard {
    locks: Arc<LocalLocks>,
    key: String,
}

impl LocalLocks {
    /// Takes `key`, waiting until `deadline`; None when it passed.
    pub(crate) fn acquire(self: &Arc<Self>, key: &str, deadline: Instant) -> Option<LocalGuard> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held.contains(key) {
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            held = self
                .freed
                .wait_timeout(held, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        held.insert(key.to_string());
        Some(LocalGuard {
            locks: Arc::clone(self),
            key: key.to_string(),
        })
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.key);
        drop(held);
        self.locks.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn second_taker_waits_and_times_out() {
        let locks = Arc::new(LocalLocks::default());
        let g = locks.acquire("a", Instant::now()).expect("free key");
        assert!(
            locks
                .acquire("a", Instant::now() + Duration::from_millis(20))
                .is_none()
        );
        assert!(locks.acquire("b", Instant::now()).is_some());
        drop(g);
        assert!(locks.acquire("a", Instant::now()).is_some());
    }

    #[test]
    fn a_waiter_gets_the_key_when_it_is_freed() {
        let locks = Arc::new(LocalLocks::default());
        let g = locks.acquire("k", Instant::now()).expect("free key");
        let l2 = Arc::clone(&locks);
        let t = std::thread::spawn(move || {
            l2.acquire("k", Instant::now() + Duration::from_secs(5))
                .is_some()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(g);
        assert!(t.join().expect("thread"));
    }
}
