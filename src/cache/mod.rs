//! The persistent token cache: grants (one per account) in a store that
//! survives crashes and is shared by every process of the host (file store,
//! or the host's own database through callbacks), protected at rest.
//!
//! Layers, bottom up:
//! - [`BlobStore`]: opaque bytes per key, a cross-process lock per key, a
//!   cheap change stamp. Implementations: the file store and the host store.
//! - codec: the versioned format with a small plaintext header and the
//!   protection (`user`, `machine`, `key`, `none`).
//! - [`GrantStore`]: typed grants over the two.
//!
//! Rules every layer keeps (MSAL's lessons): locks are OS locks that die with
//! their process, never lock files whose existence means something; a record
//! that cannot be read (`CacheCorrupt`, `CacheVersion`) is never overwritten,
//! only moved aside by an explicit reset ([`GrantStore::reset`]).
//!
//! Changes to the interface as first written: [`BlobStore::quarantine`]
//! (moves an unreadable blob aside) and [`BlobStore::recover`] (store-level
//! repair before a reset), both with default implementations; `stamp`
//! answers `Stamp(0)` for "no blob" where the store can tell.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub mod codec;
#[cfg(windows)]
mod dpapi;
pub mod file_store;
pub mod grant_store;
pub mod host_store;
mod local_lock;

pub use codec::Codec;
pub use file_store::FileStore;
pub use grant_store::{GrantStore, Scan};
pub use host_store::{HostCallbacks, HostStore};

/// The key prefix of grants.
pub const GRANT_PREFIX: &str = "grant:";
/// The key prefix of mailbox poll states (`poll:<account>/<protocol>/<folder>`).
pub const POLL_PREFIX: &str = "poll:";
/// The key prefix under which the default [`BlobStore::quarantine`] keeps
/// unreadable blobs (`corrupt:<unix time>:<key>`).
pub const CORRUPT_PREFIX: &str = "corrupt:";
use crate::protocol::Protocols;
use crate::secret::Secret;

/// The key of an account's grant in a store (`grant:<account>`).
pub fn grant_key(account: &str) -> String {
    format!("grant:{account}")
}

/// A cached access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessToken {
    pub token: Secret,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// The protocols whose scopes it was issued for.
    pub protocols: Protocols,
}

/// Whether a grant can be used silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    Ok,
    /// The provider answered invalid_grant (or similar): the user must sign
    /// in again. Calls fail fast, retrying the provider at most once a minute.
    ConsentRequired,
    /// The provider asked us to back off until `not_before`.
    Throttled,
}

/// Everything the library keeps for one account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The name the host uses (`account` in requests); the store key.
    pub account: String,
    /// The signed-in user's name from the id_token.
    pub username: Option<String>,
    pub tenant_id: Option<String>,
    pub oid: Option<String>,
    /// The protocols the user consented to.
    pub protocols: Protocols,
    /// Client credentials (app-only): no refresh token, a new access token
    /// is requested with the client secret instead.
    pub app: bool,
    pub refresh_token: Option<Secret>,
    pub access_token: Option<AccessToken>,
    pub state: GrantState,
    /// When `state` last changed (Unix seconds).
    pub since: i64,
    /// No provider call before this time (throttling, fail-fast).
    pub not_before: Option<i64>,
    /// The last failure, as the JSON record hosts see (never a secret).
    pub last_error: Option<serde_json::Value>,
}

/// A cheap fingerprint of a stored blob (modification time, size, file id):
/// equal stamps mean the blob did not change. None where a store cannot
/// tell (the host store), which means "reload". `Stamp(0)` means "no blob".
///
/// A stamp is for the warm path only (skip re-reading an unchanged blob):
/// file timestamps are coarse, so two rewrites of equal size within one
/// clock tick that reuse an inode could look alike. Anything that acts on a
/// refresh token re-reads under the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub u128);

/// Held while a key is locked; dropping it unlocks.
pub trait LockGuard: Send {}

/// Raw per-key storage shared across processes.
pub trait BlobStore: Send + Sync {
    /// The blob, or None when there is none.
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Replaces the blob durably (atomically: readers see the old or the
    /// new bytes, never a mix) before returning.
    fn save(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Removes the blob (no error when absent).
    fn remove(&self, key: &str) -> Result<()>;
    /// Locks `key` across processes, waiting up to `timeout`; `Busy` after.
    fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn LockGuard>>;
    /// A change stamp for the warm path (None: cannot tell).
    fn stamp(&self, key: &str) -> Option<Stamp>;
    /// Keys starting with `prefix`.
    fn keys(&self, prefix: &str) -> Result<Vec<String>>;

    /// Moves an unreadable blob aside so that `key` starts empty, keeping its
    /// bytes for inspection (no error when absent). The default copies it to
    /// `corrupt:<unix time>:<key>` and removes the original; the file store
    /// renames the file instead.
    fn quarantine(&self, key: &str) -> Result<()> {
        let Some(data) = self.load(key)? else {
            return Ok(());
        };
        let aside = format!("{CORRUPT_PREFIX}{}:{key}", unix_now());
        self.save(&aside, &data)?;
        self.remove(key)
    }

    /// Store-level repair before a reset: moves aside the store's own
    /// unreadable bookkeeping (the host store's key index). Returns how many
    /// blobs it moved.
    fn recover(&self) -> Result<u32> {
        Ok(0)
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
