//! In-memory state of the identity service: grants, tokens, consents, faults, counters.

use crate::errors::AadError;
use crate::settings::{Rotation, Settings};
use crate::util::html_escape;
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub user: String,
    pub scopes: Vec<String>,
    pub redirect_uri: String,
    pub challenge: Option<(String, String)>,
    pub nonce: Option<String>,
    pub expires_ms: u64,
    pub used: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtState {
    Active,
    /// Redeemed under strict rotation.
    Used,
    /// Revoked by the admin API with this AADSTS code.
    Revoked(u32),
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub client_id: String,
    pub user: String,
    /// Normalised scopes of the grant that produced it (used when a refresh omits `scope`).
    pub scopes: Vec<String>,
    pub issued_ms: u64,
    pub expires_ms: u64,
    pub state: RtState,
}

/// Can this refresh token be redeemed by `client_id` now? Pure rule used by the token endpoint.
pub fn check_refresh(
    rt: &RefreshToken,
    client_id: &str,
    now_ms: u64,
    reuse_code: u32,
) -> Result<(), AadError> {
    match rt.state {
        RtState::Revoked(code) => {
            return Err(AadError::bad(
                "invalid_grant",
                code,
                crate::errors::fault_message(code),
            ));
        }
        RtState::Used => {
            return Err(AadError::bad(
                "invalid_grant",
                reuse_code,
                "The refresh token has already been redeemed and is no longer valid (strict rotation). Use the most recent refresh token or sign in again.",
            )
            .with_suberror("bad_token"));
        }
        RtState::Active => {}
    }
    if now_ms >= rt.expires_ms {
        return Err(AadError::bad(
            "invalid_grant",
            700082,
            format!(
                "The refresh token has expired due to inactivity. The token was issued on {} and was inactive for the configured lifetime.",
                crate::util::fmt_timestamp(rt.issued_ms / 1000)
            ),
        )
        .with_suberror("token_expired"));
    }
    if !rt.client_id.eq_ignore_ascii_case(client_id) {
        return Err(AadError::bad(
            "invalid_grant",
            70000,
            "The provided grant is invalid: the refresh token was issued to a different client.",
        )
        .with_suberror("client_mismatch"));
    }
    Ok(())
}

/// State of a refresh token after a successful redemption.
pub fn after_redeem(rotation: Rotation) -> RtState {
    match rotation {
        Rotation::Microsoft => RtState::Active,
        Rotation::Strict => RtState::Used,
    }
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub client_id: String,
    /// Delegated tokens: the signed-in user.
    pub user: Option<String>,
    /// App-only tokens: the mailbox the app is bound to.
    pub app_mailbox: Option<String>,
    /// Normalised delegated scopes (full URLs).
    pub scopes: Vec<String>,
    /// App roles (app-only tokens).
    pub roles: Vec<String>,
    pub expires_ms: u64,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceState {
    Pending,
    Approved(String),
    Declined,
    Redeemed,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub client_id: String,
    pub user_code: String,
    pub scopes: Vec<String>,
    pub expires_ms: u64,
    pub last_poll_ms: Option<u64>,
    pub state: DeviceState,
}

#[derive(Debug, Clone)]
pub enum PendingKind {
    Authorize {
        client_id: String,
        redirect_uri: String,
        scopes: Vec<String>,
        state: Option<String>,
        challenge: Option<(String, String)>,
        nonce: Option<String>,
    },
    Device {
        device_code: String,
    },
}

#[derive(Debug, Clone)]
pub struct Pending {
    pub kind: PendingKind,
    pub created_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub endpoint: String,
    pub remaining: u64,
    pub status: u16,
    pub retry_after: Option<u64>,
    pub error: String,
    pub aadsts: u32,
    pub message: Option<String>,
    pub grant_type: Option<String>,
}

impl Fault {
    pub fn to_error(&self) -> AadError {
        let msg = self
            .message
            .clone()
            .unwrap_or_else(|| crate::errors::fault_message(self.aadsts).to_string());
        let mut e = AadError::new(self.status, &self.error, self.aadsts, msg);
        e.retry_after = self.retry_after;
        e
    }
    pub fn html(&self) -> String {
        format!(
            "<!DOCTYPE html><html><head><title>Sign in error</title></head><body><h1>Sorry, but we're having trouble signing you in.</h1><p id=\"error\">AADSTS{}: {}</p></body></html>",
            self.aadsts,
            html_escape(&self.to_error().message)
        )
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenCounters {
    pub authorization_code: u64,
    pub refresh_token: u64,
    pub device_code: u64,
    pub client_credentials: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IntrospectCounters {
    pub active: u64,
    pub inactive: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub token: TokenCounters,
    pub authorize: u64,
    pub devicecode: u64,
    pub introspect: IntrospectCounters,
}

#[derive(Default)]
pub struct Secrets {
    seen: HashSet<String>,
    list: Vec<String>,
}

impl Secrets {
    /// Record a secret value. Very short values are skipped (they would match everything in a log grep).
    pub fn add(&mut self, s: &str) {
        if s.len() >= 8 && self.seen.insert(s.to_string()) {
            self.list.push(s.to_string());
            // Bound memory in long load tests: keep the most recent 100,000.
            if self.list.len() > 100_000 {
                for old in self.list.drain(..10_000) {
                    self.seen.remove(&old);
                }
            }
        }
    }
    pub fn list(&self) -> &[String] {
        &self.list
    }
}

pub struct Store {
    pub initial: Settings,
    pub settings: Settings,
    pub codes: HashMap<String, AuthCode>,
    pub refresh: HashMap<String, RefreshToken>,
    pub access: HashMap<String, AccessToken>,
    pub devices: HashMap<String, Device>,
    /// user code -> device code
    pub user_codes: HashMap<String, String>,
    /// (lowercased user, lowercased client) -> consented normalised scopes
    pub consents: HashMap<(String, String), Vec<String>>,
    pub pending: HashMap<String, Pending>,
    pub faults: Vec<Fault>,
    pub latency: HashMap<String, u64>,
    pub counters: Counters,
    pub secrets: Secrets,
    pub requests: HashMap<String, VecDeque<serde_json::Value>>,
    pub last_sweep_ms: u64,
}

impl Store {
    pub fn new(settings: Settings) -> Self {
        let mut st = Store {
            initial: settings.clone(),
            settings,
            codes: HashMap::new(),
            refresh: HashMap::new(),
            access: HashMap::new(),
            devices: HashMap::new(),
            user_codes: HashMap::new(),
            consents: HashMap::new(),
            pending: HashMap::new(),
            faults: Vec::new(),
            latency: HashMap::new(),
            counters: Counters::default(),
            secrets: Secrets::default(),
            requests: HashMap::new(),
            last_sweep_ms: 0,
        };
        st.record_client_secrets();
        st
    }

    pub fn record_client_secrets(&mut self) {
        let secrets: Vec<String> = self
            .settings
            .clients
            .iter()
            .filter_map(|c| c.secret.clone())
            .collect();
        for s in secrets {
            self.secrets.add(&s);
        }
    }

    /// Back to the start-up state. The list of secrets is kept: it records what this process
    /// has ever issued, so log checks after a reset still see earlier tokens.
    pub fn reset(&mut self) {
        self.settings = self.initial.clone();
        self.codes.clear();
        self.refresh.clear();
        self.access.clear();
        self.devices.clear();
        self.user_codes.clear();
        self.consents.clear();
        self.pending.clear();
        self.faults.clear();
        self.latency.clear();
        self.counters = Counters::default();
        self.requests.clear();
        self.record_client_secrets();
    }

    pub fn consent(&self, user: &str, client: &str) -> Vec<String> {
        self.consents
            .get(&(user.to_ascii_lowercase(), client.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default()
    }

    /// Record consent as the union of what was granted before and `scopes`.
    pub fn add_consent(&mut self, user: &str, client: &str, scopes: &[String]) {
        let entry = self
            .consents
            .entry((user.to_ascii_lowercase(), client.to_ascii_lowercase()))
            .or_default();
        for s in scopes {
            if !entry.iter().any(|e| e.eq_ignore_ascii_case(s)) {
                entry.push(s.clone());
            }
        }
    }

    /// Take one use of the first fault matching this endpoint (and grant type, if filtered).
    pub fn take_fault(&mut self, endpoint: &str, grant_type: Option<&str>) -> Option<Fault> {
        let idx = self.faults.iter().position(|f| {
            f.remaining > 0
                && f.endpoint == endpoint
                && match (&f.grant_type, grant_type) {
                    (None, _) => true,
                    (Some(want), Some(got)) => grant_matches(want, got),
                    (Some(_), None) => false,
                }
        })?;
        let f = &mut self.faults[idx];
        f.remaining -= 1;
        let out = f.clone();
        if f.remaining == 0 {
            self.faults.remove(idx);
        }
        Some(out)
    }

    pub fn log_request(&mut self, endpoint: &str, entry: serde_json::Value) {
        let q = self.requests.entry(endpoint.to_string()).or_default();
        q.push_back(entry);
        while q.len() > 50 {
            q.pop_front();
        }
    }

    /// Drop expired bookkeeping so a long-running stack does not grow without bound.
    pub fn sweep(&mut self, now: u64) {
        let hour = 3_600_000;
        self.codes.retain(|_, c| c.expires_ms + hour > now);
        self.access.retain(|_, a| a.expires_ms + hour > now);
        self.refresh.retain(|_, r| r.expires_ms + hour > now);
        self.pending.retain(|_, p| p.created_ms + 2 * hour > now);
        let dead: Vec<String> = self
            .devices
            .iter()
            .filter(|(_, d)| d.expires_ms + hour <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            if let Some(d) = self.devices.remove(&k) {
                self.user_codes.remove(&d.user_code);
            }
        }
    }
}

/// `device_code` is accepted as a short name for the device code grant type in fault filters.
pub fn grant_matches(want: &str, got: &str) -> bool {
    want == got || (want == "device_code" && got == "urn:ietf:params:oauth:grant-type:device_code")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(state: RtState) -> RefreshToken {
        RefreshToken {
            client_id: "c1".into(),
            user: "alice@contoso.test".into(),
            scopes: vec![],
            issued_ms: 0,
            expires_ms: 10_000,
            state,
        }
    }

    #[test]
    fn rotation_rules() {
        // Microsoft rotation: a redeemed RT stays usable.
        let mut t = rt(RtState::Active);
        assert!(check_refresh(&t, "c1", 1, 70000).is_ok());
        t.state = after_redeem(Rotation::Microsoft);
        assert!(check_refresh(&t, "c1", 2, 70000).is_ok());
        // Strict: dead after one use, with the configured code.
        t.state = after_redeem(Rotation::Strict);
        let e = check_refresh(&t, "c1", 3, 70000).unwrap_err();
        assert_eq!((e.error.as_str(), e.code), ("invalid_grant", 70000));
        // Revoked with a chosen code.
        let e = check_refresh(&rt(RtState::Revoked(50173)), "c1", 1, 70000).unwrap_err();
        assert_eq!(e.code, 50173);
        // Expired.
        let e = check_refresh(&rt(RtState::Active), "c1", 10_000, 70000).unwrap_err();
        assert_eq!(e.code, 700082);
        // Other client.
        let e = check_refresh(&rt(RtState::Active), "c2", 1, 70000).unwrap_err();
        assert_eq!(e.suberror.as_deref(), Some("client_mismatch"));
    }

    #[test]
    fn faults_are_one_shot_and_filtered() {
        let mut st = Store::new(Settings::default());
        st.faults.push(Fault {
            endpoint: "token".into(),
            remaining: 2,
            status: 503,
            retry_after: Some(5),
            error: "temporarily_unavailable".into(),
            aadsts: 90033,
            message: None,
            grant_type: Some("refresh_token".into()),
        });
        assert!(st.take_fault("token", Some("authorization_code")).is_none());
        assert!(st.take_fault("devicecode", None).is_none());
        assert!(st.take_fault("token", Some("refresh_token")).is_some());
        assert!(st.take_fault("token", Some("refresh_token")).is_some());
        assert!(st.take_fault("token", Some("refresh_token")).is_none());
        assert!(st.faults.is_empty());
    }

    #[test]
    fn consent_is_a_union() {
        let mut st = Store::new(Settings::default());
        st.add_consent("Alice@contoso.test", "C", &["a".into(), "b".into()]);
        st.add_consent("alice@contoso.test", "c", &["B".into(), "c".into()]);
        assert_eq!(st.consent("alice@contoso.test", "c"), vec!["a", "b", "c"]);
    }
}
