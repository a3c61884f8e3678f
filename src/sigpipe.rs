//! Writing to a socket the peer already closed raises SIGPIPE on Unix, and
//! its default action ends the process. A Rust program ignores SIGPIPE from
//! `main`, but a C or C++ host that loads the library usually has the
//! default: one TLS close_notify to a server that hung up (SMTP, IMAP, POP3,
//! the identity provider) would kill the CRM's service. Writes in std, tokio
//! and rustls use `send(MSG_NOSIGNAL)` for single buffers but `writev` for
//! vectored ones, so the signal must be kept away from every thread that
//! does the library's I/O:
//!
//! - the library's own worker threads block SIGPIPE for their lifetime
//!   ([`block_on_this_thread`], from the runtime's thread-start hook);
//! - a host thread inside a library call (where `block_on` runs futures) has
//!   it blocked for the call only ([`HostThreadGuard`]); a SIGPIPE the call
//!   raised is consumed before the host's mask is restored, so the host never
//!   sees it. This is libpq's technique (`pq_block_sigpipe`).
//!
//! The process's disposition is never changed. Linux only; elsewhere these
//! are no-ops (Windows has no SIGPIPE).

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::mem::MaybeUninit;

    fn sigpipe_set() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; sigaddset with a valid
        // signal number cannot fail on an initialised set.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            set.assume_init()
        }
    }

    fn pending() -> bool {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigpending fills the set; on failure we report nothing pending.
        unsafe {
            if libc::sigpending(set.as_mut_ptr()) != 0 {
                return false;
            }
            libc::sigismember(set.as_ptr(), libc::SIGPIPE) == 1
        }
    }

    pub fn block_on_this_thread() {
        let set = sigpipe_set();
        // SAFETY: a valid set; the old mask is not needed.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
    }

    pub struct HostThreadGuard {
        /// The host's mask to restore; None when SIGPIPE was blocked already
        /// (then the host owns whatever is pending) or blocking failed.
        restore: Option<libc::sigset_t>,
        /// A SIGPIPE was pending before the call: it is the host's, keep it.
        was_pending: bool,
    }

    impl HostThreadGuard {
        pub fn enter() -> Self {
            let set = sigpipe_set();
            let mut old = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: valid set pointers; `old` is written on success.
            let old = unsafe {
                if libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) != 0 {
                    return Self {
                        restore: None,
                        was_pending: false,
                    };
                }
                old.assume_init()
            };
            // SAFETY: `old` is an initialised set.
            if unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1 {
                return Self {
                    restore: None,
                    was_pending: false,
                };
            }
            Self {
                restore: Some(old),
                was_pending: pending(),
            }
        }
    }

    impl Drop for HostThreadGuard {
        fn drop(&mut self) {
            let Some(old) = self.restore else { return };
            if !self.was_pending && pending() {
                let set = sigpipe_set();
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: consumes the pending SIGPIPE (blocked, so it is
                // still pending) without waiting.
                unsafe {
                    libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
                }
            }
            // SAFETY: restores the mask saved in enter().
            unsafe {
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    pub fn block_on_this_thread() {}

    pub struct HostThreadGuard;

    impl HostThreadGuard {
        pub fn enter() -> Self {
            HostThreadGuard
        }
    }
}

pub(crate) use imp::{HostThreadGuard, block_on_this_thread};

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    fn blocked() -> bool {
        let mut cur = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: reads this thread's mask only.
        unsafe {
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), cur.as_mut_ptr());
            libc::sigismember(cur.as_ptr(), libc::SIGPIPE) == 1
        }
    }

    #[test]
    fn a_sigpipe_raised_inside_a_call_is_consumed_and_the_mask_restored() {
        // A fresh thread has the default disposition's mask (not blocked);
        // the test process would die if the signal escaped.
        std::thread::spawn(|| {
            assert!(!blocked());
            {
                let _guard = HostThreadGuard::enter();
                assert!(blocked());
                // SAFETY: sends SIGPIPE to this very thread, where it is blocked.
                unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE) };
            }
            assert!(!blocked(), "the host's mask is restored");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn worker_threads_keep_it_blocked() {
        std::thread::spawn(|| {
            block_on_this_thread();
            assert!(blocked());
            {
                let _guard = HostThreadGuard::enter();
            }
            assert!(
                blocked(),
                "a guard on an already blocking thread leaves the mask alone"
            );
        })
        .join()
        .unwrap();
    }
}
