//! A context: one validated configuration and the tokio runtime that runs
//! every call made on it. Each context owns its runtime (nothing starts when
//! the library is loaded), and blocking calls run on the caller's thread.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use once_cell::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::auth::OAuthClient;
use crate::cache::{Codec, GrantStore, HostCallbacks, HostStore};
use crate::config::Config;
use crate::consent::{self, ConsentOp, ConsentOutcome, ConsentRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::{Language, Text};
use crate::log;
use crate::protocol::Protocols;
use crate::secret::Secret;
use crate::tokens::Tokens;

/// Worker threads per context: background operations are few and short.
const WORKER_THREADS: usize = 2;

pub struct Context {
    config: Arc<Config>,
    runtime: Runtime,
    /// Cancelled by [`Context::cancel`] and then replaced, so that a cancel
    /// ends the calls running at that moment and no later ones.
    cancel: Mutex<CancellationToken>,
    /// Built on first use, so that creating a context stays cheap.
    client: OnceCell<Arc<OAuthClient>>,
    store: Mutex<StoreSlot>,
    tokens: Tokens,
    /// Consents started on this context: freeing the context cancels the
    /// ones still running (their grant could not be stored any more).
    ops: Mutex<Vec<std::sync::Weak<ConsentOp>>>,
    /// SMTP connections, per mailbox, owned by the context.
    smtp: crate::smtp::Pools,
    /// Open mailboxes: cancelled with the context, closed when it is freed.
    mailboxes: Mutex<Vec<std::sync::Weak<crate::mailbox::handle::Mailbox>>>,
}

/// Where grants live: built on first use from the configuration, the
/// host's cache key and the host's store callbacks, rebuilt when either
/// changes, and gone for good once the context is freed (so the host's
/// callbacks are never called after mailoauth_context_free returns).
#[derive(Default)]
struct StoreSlot {
    built: Option<Arc<GrantStore>>,
    cache_key: Option<Zeroizing<Vec<u8>>>,
    host: Option<Arc<dyn HostCallbacks>>,
    closed: bool,
}

impl Context {
    /// Starts the context's runtime.
    pub fn new(config: Config) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("mailoauth-worker")
            .on_thread_start(crate::sigpipe::block_on_this_thread)
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
        let config = Arc::new(config);
        Ok(Self {
            tokens: Tokens::new(config.clone()),
            config,
            runtime: Runtime(Some(runtime)),
            cancel: Mutex::new(CancellationToken::new()),
            client: OnceCell::new(),
            store: Mutex::new(StoreSlot::default()),
            ops: Mutex::new(Vec::new()),
            smtp: crate::smtp::Pools::new(),
            mailboxes: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_arc(&self) -> Arc<Config> {
        self.config.clone()
    }

    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The identity provider's client (built on first use).
    pub fn oauth(&self) -> Result<Arc<OAuthClient>> {
        self.client
            .get_or_try_init(|| OAuthClient::new(&self.config).map(Arc::new))
            .cloned()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, StoreSlot> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The grant store (built on first use).
    pub fn grant_store(&self) -> Result<Arc<GrantStore>> {
        let mut slot = self.slot();
        if slot.closed {
            return Err(freed());
        }
        if let Some(s) = &slot.built {
            return Ok(s.clone());
        }
        let key = slot.cache_key.as_ref().map(|k| k.as_slice());
        let store = match &slot.host {
            Some(host) => {
                let mut codec = Codec::new(
                    self.config.cache.protection,
                    self.config.cache.path.as_deref(),
                )?;
                if let Some(k) = key {
                    codec = codec.with_key(k)?;
                }
                GrantStore::new(Arc::new(HostStore::new(host.clone())), codec)
            }
            None => GrantStore::for_folder(&self.config.cache, key)?,
        };
        let store = Arc::new(store);
        slot.built = Some(store.clone());
        Ok(store)
    }

    /// Whether grants live in the host's store (whose callbacks may run
    /// only on a thread inside a library call).
    pub fn uses_host_store(&self) -> bool {
        self.slot().host.is_some()
    }

    /// Sets the 32-byte key of `key` protection (copied; zeroed when dropped).
    pub fn set_cache_key(&self, key: &[u8]) -> Result<()> {
        // Checks the length the same way the codec will.
        Codec::new(crate::config::Protection::Key, None)?.with_key(key)?;
        let mut slot = self.slot();
        slot.cache_key = Some(Zeroizing::new(key.to_vec()));
        slot.built = None;
        drop(slot);
        self.tokens.forget();
        Ok(())
    }

    /// Routes the cache through the host's callbacks (None: back to files).
    pub fn set_host_store(&self, host: Option<Arc<dyn HostCallbacks>>) -> Result<()> {
        let mut slot = self.slot();
        if slot.closed {
            return Err(freed());
        }
        slot.host = host;
        slot.built = None;
        drop(slot);
        self.tokens.forget();
        Ok(())
    }

    /// Moves unreadable cache entries aside; returns how many.
    pub fn reset_cache(&self) -> Result<u32> {
        let store = self.grant_store()?;
        let n = store.reset()?;
        self.tokens.forget();
        if n > 0 {
            log::warning!("moved {n} unreadable cache entries aside");
        }
        Ok(n)
    }

    /// A valid access token for `account`, silently (see `tokens`).
    pub fn token_get(
        &self,
        account: &str,
        wanted: Protocols,
        force_refresh: bool,
    ) -> Result<Secret> {
        let store = self.grant_store()?;
        let client = self.oauth()?;
        self.run(None, async move {
            self.tokens
                .get(&store, &client, account, wanted, force_refresh)
                .await
        })
    }

    /// Starts a consent (request JSON as in the ABI) in the background.
    pub fn consent_begin(&self, request_json: &str) -> Result<Arc<ConsentOp>> {
        let req = ConsentRequest::parse(request_json, &self.config)?;
        let client = self.oauth()?;
        let runtime = self
            .handle()
            .ok_or_else(|| Error::internal("the runtime is gone"))?;
        let op = consent::begin(client, self.config.clone(), &runtime, req)?;
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        ops.retain(|w| w.strong_count() > 0);
        ops.push(Arc::downgrade(&op));
        Ok(op)
    }

    /// Waits up to `timeout` for a consent; when it succeeded, stores its
    /// grant on this thread, exactly once however many threads wait.
    pub fn consent_settle(
        &self,
        op: &ConsentOp,
        timeout: Duration,
    ) -> Option<Result<ConsentOutcome>> {
        op.settle(timeout, |outcome| {
            let store = self.grant_store()?;
            self.tokens
                .store_consent(
                    &store,
                    &outcome.account,
                    outcome.protocols,
                    outcome.app,
                    outcome.tokens.clone(),
                )
                .map(|_| ())
        })
    }

    /// Lists the accounts in the store.
    pub fn accounts(&self) -> Result<Vec<crate::cache::Grant>> {
        self.grant_store()?.list()
    }

    /// Signs an account out.
    pub fn account_remove(&self, account: &str) -> Result<()> {
        let store = self.grant_store()?;
        self.tokens.remove(&store, account)
    }

    /// Sends a message built from the request JSON (ABI `mailoauth_smtp_send`).
    pub fn smtp_send(&self, request_json: &str) -> Result<serde_json::Value> {
        let (common, msg) = crate::smtp::prepare_send(request_json, &self.config)?;
        self.smtp_deliver(&common, &msg)
    }

    /// Sends host-built RFC 5322 bytes (ABI `mailoauth_smtp_send_mime`).
    pub fn smtp_send_mime(&self, request_json: &str, mime: &[u8]) -> Result<serde_json::Value> {
        let (common, msg) = crate::smtp::prepare_mime(request_json, mime, &self.config)?;
        self.smtp_deliver(&common, &msg)
    }

    /// Forwards a polled message (ABI `mailoauth_smtp_forward`).
    pub fn smtp_forward(&self, request_json: &str, original: &[u8]) -> Result<serde_json::Value> {
        let (common, msg) = crate::smtp::prepare_forward(request_json, original, &self.config)?;
        self.smtp_deliver(&common, &msg)
    }

    fn smtp_deliver(
        &self,
        common: &crate::smtp::request::Common,
        msg: &crate::smtp::compose::Composed,
    ) -> Result<serde_json::Value> {
        let timeout = crate::smtp::timeout_of(common);
        self.run(
            Some(timeout),
            crate::smtp::send(self, &self.smtp, common, msg),
        )
        .map(|o| o.to_json())
    }

    /// The SMTP pools' counters (tests, diagnostics).
    pub fn smtp_stats(&self) -> crate::smtp::pool::StatsSnapshot {
        self.smtp.stats()
    }

    /// Remembers an open mailbox (cancelled and closed with the context).
    pub fn track_mailbox(&self, mb: &Arc<crate::mailbox::handle::Mailbox>) {
        let mut list = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(mb));
    }

    fn live_mailboxes(&self) -> Vec<Arc<crate::mailbox::handle::Mailbox>> {
        let list = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        list.iter().filter_map(std::sync::Weak::upgrade).collect()
    }

    /// Called when the host frees the context: cancels running calls and
    /// consents (a consent finishing later could not store its grant) and
    /// drops the host's callbacks for good.
    pub fn close(&self) {
        self.cancel();
        self.smtp.close();
        let ops = std::mem::take(&mut *self.ops.lock().unwrap_or_else(PoisonError::into_inner));
        for op in ops.iter().filter_map(std::sync::Weak::upgrade) {
            op.cancel();
        }
        for mb in self.live_mailboxes() {
            mb.context_closed();
        }
        let mut slot = self.slot();
        slot.closed = true;
        slot.built = None;
        slot.host = None;
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
        drop(current);
        for mb in self.live_mailboxes() {
            mb.cancel();
        }
        log::debug!("context cancelled");
    }

    /// Runs `fut` to completion on the calling thread, ending early with
    /// `Cancelled` when the context is cancelled and with `Timeout` after
    /// `timeout` (if any).
    pub fn run<T, F>(&self, timeout: Option<Duration>, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        refuse_inside_runtime()?;
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
                        )
                        // A deadline is no verdict on the request: it may
                        // well work the next time.
                        .transient()),
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

/// The error of a call on a context the host has freed.
fn freed() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        Text::new(
            "the context has been freed",
            "der Kontext wurde freigegeben",
        ),
    )
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

/// A blocking call made from inside the runtime (a host callback calling
/// back into the library) would deadlock: refused instead.
pub(crate) fn refuse_inside_runtime() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::new(
            ErrorKind::InvalidState,
            Text::new(
                "a callback must not call back into the library",
                "ein Callback darf die Bibliothek nicht erneut aufrufen",
            ),
        ));
    }
    Ok(())
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
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.transient);
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
