//! A context: one validated configuration and the tokio runtime that runs
//! every call made on it. Each context owns its runtime (nothing starts when
//! the library is loaded), and blocking calls run on the caller's thread.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::{Language, Text};
use crate::log;

/// Worker threads per context: background operations are few and short.
const WORKER_THREADS: usize = 2;

pub struct Context {
    config: Config,
    runtime: Runtime,
    /// Cancelled by [`Context::cancel`] and then replaced, so that a cancel
    /// ends the calls running at that moment and no later ones.
    cancel: Mutex<CancellationToken>,
}

impl Context {
    /// Starts the context's runtime.
    pub fn new(config: Config) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("mailoauth-worker")
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("could not start the runtime: {e}")))?;
        log::info!(
            "context created: provider={} tenant={} client_id={} cache protection={}",
            config.provider.as_str(),
            config.tenant,
            config.client_id,
            config.cache.protection.as_str()
        );
        log::debug!(
            "identity endpoints: authorize={} token={} device_code={}",
            config.endpoints.authorize.as_deref().unwrap_or("-"),
            config.endpoints.token.as_deref().unwrap_or("-"),
            config.endpoints.device_code.as_deref().unwrap_or("-")
        );
        Ok(Self {
            config,
            runtime: Runtime(Some(runtime)),
            cancel: Mutex::new(CancellationToken::new()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn language(&self) -> Language {
        self.config.language
    }

    /// A handle for spawning background work (operations).
    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.0.as_ref().map(|r| r.handle().clone())
    }

    /// The token that the next call watches; [`Context::cancel`] trips it.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Cancels every call running on this context now; later calls run.
    pub fn cancel(&self) {
        let mut current = self.cancel.lock().unwrap_or_else(PoisonError::into_inner);
        current.cancel();
        *current = CancellationToken::new();
        log::debug!("context cancelled");
    }

    /// Runs `fut` to completion on the calling thread, ending early with
    /// `Cancelled` when the context is cancelled and with `Timeout` after
    /// `timeout` (if any).
    pub fn run<T, F>(&self, timeout: Option<Duration>, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(
                ErrorKind::InvalidState,
                Text::new(
                    "a callback must not call back into the library",
                    "ein Callback darf die Bibliothek nicht erneut aufrufen",
                ),
            ));
        }
        let Some(rt) = self.runtime.0.as_ref() else {
            return Err(Error::internal("the runtime is gone"));
        };
        let cancel = self.cancel_token();
        rt.block_on(async move {
            let timed = async {
                match timeout {
                    Some(t) => match tokio::time::timeout(t, fut).await {
                        Ok(r) => r,
                        Err(_) => Err(Error::new(
                            ErrorKind::Timeout,
                            Text::new(
                                format!("the call did not finish within {} ms", t.as_millis()),
                                format!(
                                    "der Aufruf wurde nicht innerhalb von {} ms fertig",
                                    t.as_millis()
                                ),
                            ),
                        )),
                    },
                    None => fut.await,
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Err(Error::cancelled()),
                r = timed => r,
            }
        })
    }
}

/// The runtime, shut down without joining its workers: a context may be
/// dropped on a worker thread, or while the process exits (on Windows the
/// other threads are already gone then), where joining would panic or hang.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ctx() -> Arc<Context> {
        let parsed =
            crate::config::parse(r#"{"client_id":"00000000-0000-0000-0000-0000000000a1"}"#)
                .unwrap();
        Arc::new(Context::new(parsed.config).unwrap())
    }

    #[test]
    fn cancel_interrupts_a_running_call_and_spares_later_ones() {
        let c = ctx();
        let c2 = c.clone();
        let worker = std::thread::spawn(move || {
            c2.run(None, async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
        });
        // Let the call start before cancelling it.
        std::thread::sleep(Duration::from_millis(200));
        c.cancel();
        let r = worker.join().unwrap();
        assert_eq!(r.unwrap_err().kind, ErrorKind::Cancelled);
        let later = c.run(None, async { Ok(7) });
        assert_eq!(later.unwrap(), 7);
    }

    #[test]
    fn timeout_is_reported() {
        let c = ctx();
        let r = c.run(Some(Duration::from_millis(20)), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        });
        assert_eq!(r.unwrap_err().kind, ErrorKind::Timeout);
    }

    #[test]
    fn reentering_from_the_runtime_is_refused() {
        let c = ctx();
        let c2 = c.clone();
        let r = c.run(None, async move {
            let inner = c2.run(None, async { Ok(1) });
            Ok(inner.unwrap_err().kind)
        });
        assert_eq!(r.unwrap(), ErrorKind::InvalidState);
    }

    #[test]
    fn dropping_on_a_worker_thread_does_not_panic() {
        let c = ctx();
        let handle = c.handle().unwrap();
        let c2 = c.clone();
        drop(c);
        // The last reference goes away inside the runtime itself.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let d2 = done.clone();
        handle.spawn(async move {
            drop(c2);
            d2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        for _ in 0..100 {
            if done.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
