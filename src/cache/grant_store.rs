//! [`GrantStore`]: typed records over a [`BlobStore`] and a [`Codec`].
//!
//! - Unreadable records (`CacheCorrupt`, `CacheVersion`) are never
//!   overwritten: `load` reports them, and `save` refuses to replace one
//!   (it reads the current blob first), until [`GrantStore::reset`] moves
//!   them aside. `remove` (sign-out) deletes whatever is there.
//! - [`GrantStore::list`] is strict: one unreadable grant makes it fail with
//!   that grant's error, as `load` would. [`GrantStore::scan`] returns the
//!   readable grants and the unreadable keys separately, for listings that
//!   must show the rest.
//! - `load_raw` / `save_raw` do the same for other kinds of record (a
//!   mailbox's poll state under `poll:<account>/<protocol>/<folder>`), with
//!   the same protection.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::{BlobStore, Codec, GRANT_PREFIX, Grant, LockGuard, Stamp, grant_key};
use crate::config::CacheConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

/// Grants (and other records) in a store, protected by a codec.
pub struct GrantStore {
    blobs: Arc<dyn BlobStore>,
    codec: Codec,
}

/// What [`GrantStore::scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    pub grants: Vec<Grant>,
    /// Keys of records that cannot be read, with the reason.
    pub unreadable: Vec<(String, Error)>,
}

impl std::fmt::Debug for GrantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantStore")
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl GrantStore {
    pub fn new(blobs: Arc<dyn BlobStore>, codec: Codec) -> Self {
        Self { blobs, codec }
    }

    /// A file store in the configured folder with the configured protection
    /// (`key` still needs [`Codec::with_key`]: pass the host's key if set).
    pub fn for_folder(cache: &CacheConfig, host_key: Option<&[u8]>) -> Result<Self> {
        let Some(dir) = cache.path.as_deref() else {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                Text::new(
                    "cache.path is required unless a host store is set",
                    "cache.path ist nötig, wenn kein Host-Speicher gesetzt ist",
                ),
            ));
        };
        let mut codec = Codec::new(cache.protection, Some(dir))?;
        if let Some(key) = host_key {
            codec = codec.with_key(key)?;
        }
        let blobs = super::FileStore::open(dir, cache.protection)?;
        Ok(Self::new(Arc::new(blobs), codec))
    }

    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The account's grant, None when there is none.
    pub fn load(&self, account: &str) -> Result<Option<Grant>> {
        let key = grant_key(account);
        let Some(grant) = self.load_raw::<Grant>(&key)? else {
            return Ok(None);
        };
        if grant.account != account {
            return Err(super::codec::corrupt(
                &key,
                Text::new(
                    "it holds the grant of another account",
                    "er enthält die Berechtigung eines anderen Kontos",
                ),
            ));
        }
        Ok(Some(grant))
    }

    /// Stores the grant under its account (refusing to replace an
    /// unreadable record).
    pub fn save(&self, grant: &Grant) -> Result<()> {
        self.save_raw(&grant_key(&grant.account), grant)
    }

    /// Removes the account's grant (no error when absent).
    pub fn remove(&self, account: &str) -> Result<()> {
        self.blobs.remove(&grant_key(account))
    }

    /// Every grant; fails with the first unreadable one's error.
    pub fn list(&self) -> Result<Vec<Grant>> {
        let scan = self.scan()?;
        if let Some((_, e)) = scan.unreadable.into_iter().next() {
            return Err(e);
        }
        Ok(scan.grants)
    }

    /// Every grant, and separately the keys of those that cannot be read.
    pub fn scan(&self) -> Result<Scan> {
        let mut scan = Scan::default();
        for key in self.blobs.keys(GRANT_PREFIX)? {
            let Some(account) = key.strip_prefix(GRANT_PREFIX) else {
                continue;
            };
            match self.load(account) {
                Ok(Some(g)) => scan.grants.push(g),
                Ok(None) => {} // removed meanwhile
                Err(e) if is_unreadable(&e) => scan.unreadable.push((key, e)),
                Err(e) => return Err(e),
            }
        }
        Ok(scan)
    }

    /// Locks the account's grant across processes (see [`BlobStore::lock`]).
    pub fn lock(&self, account: &str, timeout: Duration) -> Result<Box<dyn LockGuard>> {
        self.blobs.lock(&grant_key(account), timeout)
    }

    pub fn stamp(&self, account: &str) -> Option<Stamp> {
        self.blobs.stamp(&grant_key(account))
    }

    /// A record of any kind under `key`, None when there is none.
    pub fn load_raw<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        // Zeroed after use: with `none` protection the blob is plaintext.
        match self.blobs.load(key)?.map(Zeroizing::new) {
            None => Ok(None),
            Some(blob) => self.codec.decode(key, &blob).map(Some),
        }
    }

    /// Stores a record of any kind under `key`. An unreadable record there
    /// is not replaced: its error is returned instead.
    pub fn save_raw<T: Serialize>(&self, key: &str, value: &T) -> Result<()> {
        if let Some(old) = self.blobs.load(key)?.map(Zeroizing::new) {
            // Header, protection and JSON syntax; not the record's shape.
            self.codec.decode::<serde::de::IgnoredAny>(key, &old)?;
        }
        let blob = self.codec.encode(value)?;
        self.blobs.save(key, &blob)
    }

    /// Removes a record of any kind (no error when absent).
    pub fn remove_raw(&self, key: &str) -> Result<()> {
        self.blobs.remove(key)
    }

    /// `mailoauth_cache_reset`: moves every unreadable record aside (and a
    /// damaged key file, and the store's own unreadable bookkeeping), so
    /// that those keys start empty. Readable records stay. Returns how many
    /// blobs were moved aside.
    pub fn reset(&self) -> Result<u32> {
        let mut moved = self.blobs.recover()?;
        if self.codec.recover_key()? {
            moved += 1;
        }
        for key in self.blobs.keys("")? {
            if key.starts_with(super::CORRUPT_PREFIX) || key == super::host_store::INDEX_KEY {
                continue;
            }
            let Some(blob) = self.blobs.load(&key)?.map(Zeroizing::new) else {
                continue;
            };
            let readable = if let Some(account) = key.strip_prefix(GRANT_PREFIX) {
                self.load(account).map(drop)
            } else {
                self.codec
                    .decode::<serde::de::IgnoredAny>(&key, &blob)
                    .map(drop)
            };
            match readable {
                Ok(()) => {}
                Err(e) if is_unreadable(&e) => {
                    self.blobs.quarantine(&key)?;
                    log::warning!("cache reset: {}", e.message.en);
                    moved += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }
}

fn is_unreadable(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::CacheCorrupt | ErrorKind::CacheVersion)
}
