//! The token manager: hands out a valid access token for an account without
//! ever asking the user, refreshing when needed, one refresh at a time per
//! account across threads (an async mutex) and processes (the store's lock),
//! re-reading the store under the lock because a sibling process may have
//! refreshed already. The rotated refresh token is stored durably before the
//! new access token is handed out, and no failure ever discards it.
//!
//! Everything here runs on the calling thread (inside `Context::run`), so a
//! host store's callbacks run only on the host's own thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::auth::{OAuthClient, TokenSet, delegated_scopes, now};
use crate::cache::{AccessToken, Grant, GrantState, GrantStore, Stamp};
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::protocol::Protocols;
use crate::secret::Secret;

/// An access token is handed out only while it stays valid for at least
/// min(5 minutes, half its lifetime).
const MIN_REMAINING_S: i64 = 300;
/// After invalid_grant the provider is asked again at most this often.
const CONSENT_RETRY_S: i64 = 60;
/// How long a call waits for another process's refresh of the same account.
pub const STORE_LOCK_TIMEOUT: Duration = Duration::from_secs(90);

/// Is this access token fresh enough to hand out?
pub fn is_fresh(at: &AccessToken, now: i64) -> bool {
    let lifetime = (at.expires_at - at.issued_at).max(0);
    let margin = MIN_REMAINING_S.min(lifetime / 2);
    at.expires_at - now >= margin && at.expires_at > now
}

/// What the token manager remembers between calls, per account: the grant
/// as last read or written and the store's stamp at that moment.
struct Memo {
    stamp: Option<Stamp>,
    grant: Grant,
}

pub struct Tokens {
    /// One async mutex per account: threads of this process queue here
    /// before taking the store's cross-process lock.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    memo: Mutex<HashMap<String, Memo>>,
    config: Arc<Config>,
}

impl Tokens {
    pub fn new(config: Arc<Config>) -> Self {
        Self {
            inflight: Mutex::new(HashMap::new()),
            memo: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// Forgets what was read (after the store was replaced or reset).
    pub fn forget(&self) {
        self.memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn account_mutex(&self, account: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inflight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(account.to_string())
            .or_default()
            .clone()
    }

    fn remember(&self, store: &GrantStore, grant: &Grant) {
        let stamp = store.stamp(&grant.account);
        self.memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                grant.account.clone(),
                Memo {
                    stamp,
                    grant: grant.clone(),
                },
            );
    }

    /// The warm path: a remembered token that is still fresh, from a store
    /// that has not changed since (one stat for the file store).
    fn warm(&self, store: &GrantStore, account: &str, wanted: Protocols) -> Option<Secret> {
        let memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        let m = memo.get(account)?;
        // A throttled grant still hands out its valid token (as MSAL does).
        if m.grant.state == GrantState::ConsentRequired || !m.grant.protocols.covers(wanted) {
            return None;
        }
        let at = m.grant.access_token.as_ref()?;
        if !at.protocols.covers(wanted) || !is_fresh(at, now()) {
            return None;
        }
        // A store that can tell must not have changed (sign-out, consent
        // revoked elsewhere); one that cannot (host store) keeps the token:
        // a valid access token stays valid whatever a sibling does.
        if m.stamp.is_some() && store.stamp(account) != m.stamp {
            return None;
        }
        Some(at.token.clone())
    }

    /// A valid access token for `account` covering `wanted`.
    pub async fn get(
        &self,
        store: &GrantStore,
        client: &OAuthClient,
        account: &str,
        wanted: Protocols,
        force_refresh: bool,
    ) -> Result<Secret> {
        if !force_refresh && let Some(t) = self.warm(store, account, wanted) {
            return Ok(t);
        }
        let mutex = self.account_mutex(account);
        let _in_process = mutex.lock().await;
        let _across_processes = store.lock(account, STORE_LOCK_TIMEOUT)?;
        let Some(mut grant) = store.load(account)? else {
            self.memo
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(account);
            return Err(self.no_grant(account));
        };
        self.remember(store, &grant);
        if !grant.protocols.covers(wanted) {
            return Err(self.not_consented(&grant, wanted));
        }
        let t = now();
        if !force_refresh
            && grant.state != GrantState::ConsentRequired
            && let Some(at) = grant
                .access_token
                .as_ref()
                .filter(|at| at.protocols.covers(wanted) && is_fresh(at, t))
        {
            // Another thread or process refreshed while we waited.
            return Ok(at.token.clone());
        }
        if let Some(not_before) = grant.not_before.filter(|nb| *nb > t) {
            match grant.state {
                GrantState::ConsentRequired => return Err(self.still_needs_consent(&grant)),
                GrantState::Throttled => return Err(self.still_throttled(&grant, not_before - t)),
                GrantState::Ok => {}
            }
        }
        let result = if grant.app {
            client.client_credentials().await
        } else {
            self.redeem(store, client, &mut grant).await
        };
        match result {
            Ok(tokens) => {
                let consented = grant.protocols;
                apply_tokens(&mut grant, tokens, consented);
                grant.state = GrantState::Ok;
                grant.not_before = None;
                grant.last_error = None;
                // Durable before the token is handed out.
                store.save(&grant)?;
                self.remember(store, &grant);
                log::info!("refreshed the access token of {account}");
                grant
                    .access_token
                    .as_ref()
                    .map(|at| at.token.clone())
                    .ok_or_else(|| Error::internal("a refreshed grant had no access token"))
            }
            Err(e) => {
                self.record_failure(store, &mut grant, &e);
                Err(e)
            }
        }
    }

    /// Redeems the grant's refresh token for every protocol it consented to.
    /// On invalid_grant the store is read once more: if a sibling stored a
    /// newer refresh token (a rotation race), that one is tried.
    async fn redeem(
        &self,
        store: &GrantStore,
        client: &OAuthClient,
        grant: &mut Grant,
    ) -> Result<TokenSet> {
        let Some(rt) = grant.refresh_token.clone() else {
            return Err(self.no_grant(&grant.account));
        };
        let scopes = delegated_scopes(&self.config, grant.protocols)?;
        match client.refresh(&rt, &scopes).await {
            Err(e) if e.kind == ErrorKind::ConsentRequired => {
                if let Some(fresh) = store.load(&grant.account)?
                    && let Some(newer) = fresh
                        .refresh_token
                        .as_ref()
                        .filter(|n| n.expose() != rt.expose())
                {
                    log::info!(
                        "refresh token of {} was rotated by another process; retrying",
                        grant.account
                    );
                    let newer = newer.clone();
                    *grant = fresh;
                    return client.refresh(&newer, &scopes).await;
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Keeps what a failure teaches: invalid_grant marks the account (fail
    /// fast, retry the provider once a minute), a throttle sets a not-before
    /// time, and every failure is remembered for account_list. The refresh
    /// token is never touched.
    fn record_failure(&self, store: &GrantStore, grant: &mut Grant, e: &Error) {
        let t = now();
        let record = e.to_stored(t);
        match e.kind {
            ErrorKind::ConsentRequired => {
                if grant.state != GrantState::ConsentRequired {
                    grant.since = t;
                }
                grant.state = GrantState::ConsentRequired;
                grant.not_before = Some(t + CONSENT_RETRY_S);
                grant.access_token = None;
            }
            ErrorKind::Throttled => {
                if let Some(s) = e.retry_after_s {
                    if grant.state != GrantState::Throttled {
                        grant.since = t;
                    }
                    grant.state = GrantState::Throttled;
                    grant.not_before = Some(t + s as i64);
                }
            }
            _ => {}
        }
        match e.kind {
            ErrorKind::ConsentRequired => log::warning!(
                "{} needs to sign in again: {} ({})",
                grant.account,
                e.message.en,
                e.provider_code.as_deref().unwrap_or("no provider code")
            ),
            ErrorKind::Throttled => log::warning!(
                "the identity provider throttles refreshes of {} for {} s",
                grant.account,
                e.retry_after_s.unwrap_or(0)
            ),
            _ => log::info!("refreshing {} failed: {}", grant.account, e.message.en),
        }
        grant.last_error = Some(record);
        if let Err(save_err) = store.save(grant) {
            log::warning!(
                "could not record the failure for {}: {}",
                grant.account,
                save_err.message.en
            );
        } else {
            self.remember(store, grant);
        }
    }

    /// Stores the outcome of a consent: a new grant, or the existing one
    /// widened to the newly consented protocols.
    pub fn store_consent(
        &self,
        store: &GrantStore,
        account: &str,
        protocols: Protocols,
        app: bool,
        tokens: TokenSet,
    ) -> Result<Grant> {
        let _across_processes = store.lock(account, STORE_LOCK_TIMEOUT)?;
        let t = now();
        let existing = store.load(account)?;
        let mut grant = match existing {
            Some(g) if g.app == app => g,
            _ => Grant {
                account: account.to_string(),
                username: None,
                tenant_id: None,
                oid: None,
                protocols: Protocols::NONE,
                app,
                refresh_token: None,
                access_token: None,
                state: GrantState::Ok,
                since: t,
                not_before: None,
                last_error: None,
            },
        };
        if let Some(id) = &tokens.id {
            grant.username = id.preferred_username.clone().or(grant.username);
            grant.tenant_id = id.tid.clone().or(grant.tenant_id);
            grant.oid = id.oid.clone().or(grant.oid);
        }
        grant.protocols = grant.protocols.union(protocols);
        apply_tokens(&mut grant, tokens, protocols);
        if grant.state != GrantState::Ok {
            grant.since = t;
        }
        grant.state = GrantState::Ok;
        grant.not_before = None;
        grant.last_error = None;
        store.save(&grant)?;
        self.remember(store, &grant);
        log::info!(
            "stored the grant of {account} for {}",
            grant.protocols.names().join(" ")
        );
        Ok(grant)
    }

    /// Signs an account out: its grant is gone from the store.
    pub fn remove(&self, store: &GrantStore, account: &str) -> Result<()> {
        let _across_processes = store.lock(account, STORE_LOCK_TIMEOUT)?;
        if store.load(account)?.is_none() {
            return Err(Error::new(
                ErrorKind::NotFound,
                Text::new(
                    format!("no account '{account}' in the token cache"),
                    format!("kein Konto '{account}' im Token-Cache"),
                ),
            ));
        }
        store.remove(account)?;
        self.memo
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(account);
        log::info!("signed out {account}");
        Ok(())
    }

    fn no_grant(&self, account: &str) -> Error {
        Error::new(
            ErrorKind::ConsentRequired,
            Text::new(
                format!("no grant for '{account}': the user must sign in once (consent)"),
                format!(
                    "keine Berechtigung für '{account}': der Benutzer muss sich einmal anmelden (Zustimmung)"
                ),
            ),
        )
    }

    fn not_consented(&self, grant: &Grant, wanted: Protocols) -> Error {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|p| !grant.protocols.contains(*p))
            .map(|p| p.as_str())
            .collect();
        Error::new(
            ErrorKind::ConsentRequired,
            Text::new(
                format!(
                    "'{}' consented to {} but not to {}: sign in once more for {} (the existing grant is kept)",
                    grant.account,
                    grant.protocols.names().join(", "),
                    missing.join(", "),
                    missing.join(", ")
                ),
                format!(
                    "'{}' hat {} zugestimmt, aber nicht {}: einmal erneut für {} anmelden (die bestehende Berechtigung bleibt)",
                    grant.account,
                    grant.protocols.names().join(", "),
                    missing.join(", "),
                    missing.join(", ")
                ),
            ),
        )
    }

    fn still_needs_consent(&self, grant: &Grant) -> Error {
        let mut e = Error::new(
            ErrorKind::ConsentRequired,
            Text::new(
                format!(
                    "'{}' must sign in again: the identity provider refused the stored grant",
                    grant.account
                ),
                format!(
                    "'{}' muss sich erneut anmelden: der Identitätsanbieter hat die gespeicherte Berechtigung abgelehnt",
                    grant.account
                ),
            ),
        );
        copy_recorded(&mut e, grant.last_error.as_ref());
        e
    }

    fn still_throttled(&self, grant: &Grant, remaining_s: i64) -> Error {
        let mut e = Error::new(
            ErrorKind::Throttled,
            Text::new(
                format!("the identity provider asked to wait {remaining_s} more seconds before refreshing '{}'", grant.account),
                format!("der Identitätsanbieter bat, noch {remaining_s} Sekunden vor dem Erneuern für '{}' zu warten", grant.account),
            ),
        )
        .transient();
        copy_recorded(&mut e, grant.last_error.as_ref());
        e.retry_after_s = Some(remaining_s.max(0) as u64);
        e
    }
}

/// Puts a token response into a grant: the rotated refresh token replaces
/// the old one (a response without one keeps it), the access token covers
/// `protocols`.
fn apply_tokens(grant: &mut Grant, tokens: TokenSet, protocols: Protocols) {
    if let Some(rt) = tokens.refresh_token {
        grant.refresh_token = Some(rt);
    }
    grant.access_token = Some(AccessToken {
        token: tokens.access_token,
        issued_at: tokens.issued_at,
        expires_at: tokens.expires_at,
        protocols,
    });
}

/// Copies the provider's details of a recorded failure into a fail-fast
/// error, so the host still sees the AADSTS code and the hint.
fn copy_recorded(e: &mut Error, record: Option<&serde_json::Value>) {
    let Some((recorded, _)) = record.and_then(Error::from_stored) else {
        return;
    };
    e.provider_error = recorded.provider_error.clone();
    e.provider_code = recorded.provider_code.clone();
    e.correlation_id = recorded.correlation_id.clone();
    e.hint = recorded.hint.clone();
}
