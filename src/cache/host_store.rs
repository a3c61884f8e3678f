//! [`HostStore`]: blobs in the host's own database, through its callbacks
//! (`mailoauth_context_set_store`).
//!
//! - The blobs are already protected by the codec (use `protection: key` so
//!   that every machine can read them); the host stores opaque bytes.
//! - The ABI has no delete callback: removing a key saves zero bytes, and an
//!   empty blob means "no blob" when loading.
//! - `keys(prefix)` reads an index that this store maintains under the key
//!   `index:keys`: JSON `{"v":1,"keys":[…]}`, plaintext (it holds key names
//!   only, which the host sees anyway). It is updated under its own lock on
//!   every save of a new key and every removal. An index that cannot be
//!   parsed is never overwritten: saves of new keys, removals and listings
//!   fail with `CacheCorrupt` until a reset ([`BlobStore::recover`]) moves it
//!   aside (`corrupt:<unix time>:index:keys`) and starts an empty one.
//! - `lock` takes an in-process lock first, then the host's lock callback if
//!   there is one. Without a lock callback, threads of this process are still
//!   serialised, but other processes and machines are not.
//! - Callback failures: a non-zero return becomes `CacheIo` naming the
//!   callback and its value; a lock callback that fails while locking means
//!   `Busy`. Catching panics in callbacks is the C layer's job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::local_lock::{LocalGuard, LocalLocks};
use super::{BlobStore, CORRUPT_PREFIX, LockGuard, Stamp, unix_now};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

/// The key of the index blob.
pub const INDEX_KEY: &str = "index:keys";
/// How long index updates wait for the index lock.
const INDEX_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The host's store callbacks, as the C layer wraps them. Each returns the
/// callback's non-zero result code as the error.
pub trait HostCallbacks: Send + Sync {
    /// The blob of `key`, None (or an empty blob) when there is none.
    fn load(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, i32>;
    /// Stores `data` under `key`; zero bytes means "remove".
    fn save(&self, key: &str, data: &[u8]) -> std::result::Result<(), i32>;
    /// Locks (`lock` true, waiting up to `timeout_ms`) or unlocks `key`.
    fn lock(&self, key: &str, lock: bool, timeout_ms: i32) -> std::result::Result<(), i32>;
    /// Whether the host gave a lock callback.
    fn has_lock(&self) -> bool;
}

/// A [`BlobStore`] over the host's callbacks.
pub struct HostStore {
    callbacks: Arc<dyn HostCallbacks>,
    locks: Arc<LocalLocks>,
}

impl std::fmt::Debug for HostStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostStore")
            .field("has_lock", &self.callbacks.has_lock())
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    v: u32,
    keys: Vec<String>,
}

impl HostStore {
    pub fn new(callbacks: Arc<dyn HostCallbacks>) -> Self {
        if !callbacks.has_lock() {
            log::info!(
                "the host store has no lock callback: other processes and machines are not kept from refreshing at the same time"
            );
        }
        Self {
            callbacks,
            locks: Arc::new(LocalLocks::default()),
        }
    }

    fn load_index(&self) -> Result<Index> {
        let Some(data) = self.load(INDEX_KEY)? else {
            return Ok(Index {
                v: 1,
                keys: Vec::new(),
            });
        };
        match serde_json::from_slice::<Index>(&data) {
            Ok(mut index) if index.v == 1 => {
                // Kept sorted by this store; a host may have edited it.
                index.keys.sort();
                index.keys.dedup();
                Ok(index)
            }
            Ok(index) => Err(Error::new(
                ErrorKind::CacheVersion,
                Text::new(
                    format!(
                        "the host store's key index was written by a newer mailoauth (version {})",
                        index.v
                    ),
                    format!(
                        "der Schlüsselindex des Host-Speichers wurde von einem neueren mailoauth geschrieben (Version {})",
                        index.v
                    ),
                ),
            )),
            Err(_) => Err(super::codec::corrupt(
                INDEX_KEY,
                Text::new(
                    "the host store's key index cannot be parsed",
                    "der Schlüsselindex des Host-Speichers ist nicht lesbar",
                ),
            )),
        }
    }

    fn save_index(&self, index: &Index) -> Result<()> {
        let data = serde_json::to_vec(index)
            .map_err(|e| Error::internal(format!("index not serialisable: {e}")))?;
        self.save_raw(INDEX_KEY, &data)
    }

    /// Adds or removes `key` in the index, under the index's lock.
    fn update_index(&self, key: &str, present: bool) -> Result<()> {
        if key == INDEX_KEY {
            return Ok(());
        }
        let _guard = self.lock(INDEX_KEY, INDEX_LOCK_TIMEOUT)?;
        let mut index = self.load_index()?;
        let pos = index.keys.binary_search_by(|k| k.as_str().cmp(key));
        match (pos, present) {
            (Err(at), true) => index.keys.insert(at, key.to_string()),
            (Ok(at), false) => {
                index.keys.remove(at);
            }
            _ => return Ok(()),
        }
        self.save_index(&index)
    }

    fn save_raw(&self, key: &str, data: &[u8]) -> Result<()> {
        self.callbacks
            .save(key, data)
            .map_err(|code| callback_error("save", key, code))
    }
}

impl BlobStore for HostStore {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.callbacks.load(key) {
            Ok(Some(data)) if !data.is_empty() => Ok(Some(data)),
            Ok(_) => Ok(None),
            Err(code) => Err(callback_error("load", key, code)),
        }
    }

    fn save(&self, key: &str, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return self.remove(key);
        }
        // The index first: a key is never stored without being listed (an
        // index entry without a blob is harmless: it reads as "no blob").
        self.update_index(key, true)?;
        self.save_raw(key, data)
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.save_raw(key, &[])?;
        self.update_index(key, false)
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn LockGuard>> {
        let start = Instant::now();
        let deadline = start
            .checked_add(timeout)
            .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365));
        let local = self
            .locks
            .acquire(key, deadline)
            .ok_or_else(|| busy(key, None))?;
        if !self.callbacks.has_lock() {
            return Ok(Box::new(HostLock {
                callbacks: None,
                key: key.to_string(),
                _local: local,
            }));
        }
        let left = timeout.saturating_sub(start.elapsed()).as_millis();
        let left = i32::try_from(left).unwrap_or(i32::MAX);
        self.callbacks
            .lock(key, true, left)
            .map_err(|code| busy(key, Some(code)))?;
        Ok(Box::new(HostLock {
            callbacks: Some(Arc::clone(&self.callbacks)),
            key: key.to_string(),
            _local: local,
        }))
    }

    fn stamp(&self, _key: &str) -> Option<Stamp> {
        None
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let index = self.load_index()?;
        Ok(index
            .keys
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect())
    }

    fn recover(&self) -> Result<u32> {
        let _guard = self.lock(INDEX_KEY, INDEX_LOCK_TIMEOUT)?;
        match self.load_index() {
            Ok(_) => Ok(0),
            Err(e) if matches!(e.kind, ErrorKind::CacheCorrupt | ErrorKind::CacheVersion) => {
                if let Some(data) = self.load(INDEX_KEY)? {
                    self.save_raw(
                        &format!("{CORRUPT_PREFIX}{}:{INDEX_KEY}", unix_now()),
                        &data,
                    )?;
                }
                self.save_index(&Index {
                    v: 1,
                    keys: Vec::new(),
                })?;
                log::warning!(
                    "the host store's unreadable key index was moved aside; records it listed are no longer listed"
                );
                Ok(1)
            }
            Err(e) => Err(e),
        }
    }
}

/// The in-process key, and the host's lock if it has one.
struct HostLock {
    callbacks: Option<Arc<dyn HostCallbacks>>,
    key: String,
    _local: LocalGuard,
}

impl LockGuard for HostLock {}

impl Drop for HostLock {
    fn drop(&mut self) {
        if let Some(cb) = &self.callbacks
            && let Err(code) = cb.lock(&self.key, false, 0)
        {
            log::warning!(
                "the host store's lock callback returned {code} when unlocking {}",
                self.key
            );
        }
    }
}

fn callback_error(which: &str, key: &str, code: i32) -> Error {
    Error::new(
        ErrorKind::CacheIo,
        Text::new(
            format!("the host store's {which} callback returned {code} (key {key})"),
            format!("der {which}-Callback des Host-Speichers gab {code} zurück (Schlüssel {key})"),
        ),
    )
}

fn busy(key: &str, code: Option<i32>) -> Error {
    let (en, de) = match code {
        Some(code) => (
            format!("the host store's lock callback returned {code} for {key}: locked elsewhere"),
            format!(
                "der lock-Callback des Host-Speichers gab {code} für {key} zurück: anderswo gesperrt"
            ),
        ),
        None => (
            format!("the cache record {key} stayed locked by another thread"),
            format!("der Cache-Eintrag {key} blieb von einem anderen Thread gesperrt"),
        ),
    };
    Error::new(ErrorKind::Busy, Text::new(en, de)).transient()
}
