//! Talking to the identity provider (Microsoft Entra ID v2.0 endpoints, or a
//! `custom` one with the same shape): token requests, device codes, error
//! mapping with administrator hints, retries with backoff.
//!
//! Nothing here stores anything: the token manager (`tokens`) and the
//! consent flows (`consent`) decide what to keep.

pub mod client;
pub mod errors;
mod hints;
pub(crate) mod http;
pub mod id_token;

pub use client::{OAuthClient, pkce_pair};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::protocol::{Protocol, Protocols};
use crate::secret::Secret;

/// The scopes every interactive consent and refresh adds.
pub const OIDC_SCOPES: [&str; 3] = ["offline_access", "openid", "profile"];

/// Claims read from an id_token (for naming only; never for authorisation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub preferred_username: Option<String>,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub name: Option<String>,
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: Secret,
    /// Entra rotates it on every redemption; None when the response had none
    /// (keep the old one) and for client credentials.
    pub refresh_token: Option<Secret>,
    /// Absolute expiry, Unix seconds.
    pub expires_at: i64,
    /// Absolute time the token was issued (for "half its lifetime").
    pub issued_at: i64,
    /// The `scope` field of the response, split.
    pub scopes: Vec<String>,
    pub id: Option<IdClaims>,
}

/// A device authorization in progress.
#[derive(Debug, Clone)]
pub struct DeviceCode {
    pub device_code: Secret,
    pub user_code: String,
    pub verification_uri: String,
    /// Microsoft's ready-to-show text.
    pub message: String,
    pub expires_at: i64,
    pub interval_s: u64,
}

/// One poll of the device-code grant.
#[derive(Debug)]
pub enum DevicePoll {
    Pending,
    /// Poll less often: add 5 seconds to the interval.
    SlowDown,
    Done(Box<TokenSet>),
}

/// The delegated scopes for a set of protocols, plus offline_access, openid
/// and profile, in the configuration's spelling.
pub fn delegated_scopes(config: &Config, protocols: Protocols) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for p in protocols.iter() {
        let s = match p {
            Protocol::Smtp => &config.scopes.smtp,
            Protocol::Imap => &config.scopes.imap,
            Protocol::Pop3 => &config.scopes.pop3,
        };
        match s {
            Some(s) => out.push(s.clone()),
            None => {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    Text::new(
                        format!(
                            "configuration key 'scopes.{}': required to sign in for {}",
                            p.as_str(),
                            p.as_str()
                        ),
                        format!(
                            "Konfigurationsschlüssel 'scopes.{}': für die Anmeldung für {} erforderlich",
                            p.as_str(),
                            p.as_str()
                        ),
                    ),
                ));
            }
        }
    }
    out.extend(OIDC_SCOPES.iter().map(|s| s.to_string()));
    Ok(out)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
