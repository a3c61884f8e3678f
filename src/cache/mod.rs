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

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
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
/// tell (the host store), which means "reload".
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
}
