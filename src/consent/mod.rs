//! Consent: the interactive (or app-only) sign-in that creates a grant, run
//! as one background operation.
//!
//! Three flows ([`Flow`]):
//! - `browser`: authorization code + PKCE (S256) with a loopback redirect
//!   ([`browser`]);
//! - `device`: the device-code grant ([`device`]);
//! - `app`: client credentials, no user.
//!
//! # The operation and its finish protocol
//!
//! [`begin`] checks the request, prepares what it can synchronously (the
//! loopback listener, the authorize URL), spawns the flow on the context's
//! runtime and returns an [`Arc<ConsentOp>`] at once. The op never stores
//! anything: the token manager stores the grant on the host's thread. So an
//! op ends in two steps:
//!
//! 1. **The flow ends.** Success gives a [`ConsentOutcome`] (tokens, account
//!    name); [`ConsentOp::wait`] then returns `Some(Ok(outcome))`, but
//!    [`ConsentOp::info`] still says `exchanging`. Failure, timeout or
//!    cancel give `Some(Err(..))` and state `failed`/`cancelled` at once.
//! 2. **The owner settles it.** After storing the outcome, the owner calls
//!    [`ConsentOp::finish`]`(Ok(()))` (state `done`) or
//!    `finish(Err(e))` (state `failed`; from then on `wait` returns
//!    `Some(Err(e))`). [`ConsentOp::settle`] does wait + store + finish in
//!    one call and guarantees that the store closure runs at most once even
//!    when several threads wait on the same op: use it from `op_wait` and
//!    `op_result`.
//!
//! [`ConsentOp::cancel`] is idempotent and may come from any thread: a
//! running flow ends promptly with `Cancelled` (the loopback listener closes
//! with it); an outcome that is not stored yet is dropped (state
//! `cancelled`); after `finish` or while `settle` is storing it does nothing.
//!
//! `wait` blocks the calling thread (a condition variable): call it from host
//! threads, never from inside the runtime.

pub mod browser;
pub mod device;

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::auth::{OAuthClient, TokenSet};
use crate::config::{Browser, Config};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::protocol::Protocols;

/// The default for `timeout_s`.
pub const DEFAULT_TIMEOUT_S: u32 = 300;
/// The longest consent we wait for.
pub const MAX_TIMEOUT_S: u32 = 3600;
/// The longest account name we accept.
const MAX_ACCOUNT_LEN: usize = 320;

/// How the user (or the app) signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Browser,
    Device,
    App,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Browser => "browser",
            Flow::Device => "device",
            Flow::App => "app",
        }
    }
}

/// A checked consent request (`mailoauth_consent_begin`'s JSON).
#[derive(Debug, Clone)]
pub struct ConsentRequest {
    /// The login hint and the name the grant is stored under; for `app` the
    /// mailbox the token is used for.
    pub account: Option<String>,
    pub protocols: Protocols,
    pub flow: Flow,
    pub prompt: Option<String>,
    pub timeout_s: u32,
    pub accept_other_account: bool,
}

const KEYS: [&str; 6] = [
    "account",
    "protocols",
    "flow",
    "prompt",
    "timeout_s",
    "accept_other_account",
];

const PROMPTS: [&str; 5] = ["select_account", "consent", "login", "none", "create"];

fn invalid_config(en: String, de: String) -> Error {
    Error::new(ErrorKind::InvalidConfig, Text::new(en, de))
}

fn bad_key(key: &str, en: &str, de: &str) -> Error {
    invalid_config(
        format!("consent request key '{key}': {en}"),
        format!("Schlüssel '{key}' der Anmeldeanfrage: {de}"),
    )
}

impl ConsentRequest {
    /// Parses and checks the request JSON against the configuration.
    pub fn parse(json: &str, config: &Config) -> Result<Self> {
        if json.len() as u64 > config.max_json_bytes {
            return Err(Error::new(
                ErrorKind::TooLarge,
                Text::new(
                    format!(
                        "the consent request is larger than {} bytes",
                        config.max_json_bytes
                    ),
                    format!(
                        "die Anmeldeanfrage ist größer als {} Bytes",
                        config.max_json_bytes
                    ),
                ),
            ));
        }
        let v = crate::config::strict_json::parse(json).map_err(|e| {
            invalid_config(
                format!("the consent request is not valid JSON: {e}"),
                format!("die Anmeldeanfrage ist kein gültiges JSON: {e}"),
            )
        })?;
        let Value::Object(obj) = v else {
            return Err(invalid_config(
                "the consent request must be a JSON object".into(),
                "die Anmeldeanfrage muss ein JSON-Objekt sein".into(),
            ));
        };
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            let k: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
            return Err(invalid_config(
                format!(
                    "unknown consent request key '{k}' (known: {})",
                    KEYS.join(", ")
                ),
                format!(
                    "unbekannter Schlüssel '{k}' in der Anmeldeanfrage (bekannt: {})",
                    KEYS.join(", ")
                ),
            ));
        }

        let account = match obj.get("account") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if s.contains(['\r', '\n', '\0']) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        Text::new(
                            "consent request key 'account' contains a line break or NUL character",
                            "Schlüssel 'account' der Anmeldeanfrage enthält einen Zeilenumbruch oder ein NUL-Zeichen",
                        ),
                    ));
                }
                let s = s.trim();
                if s.is_empty() || s.len() > MAX_ACCOUNT_LEN || s.chars().any(char::is_control) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        Text::new(
                            "consent request key 'account': expected a sign-in name such as user@contoso.com",
                            "Schlüssel 'account' der Anmeldeanfrage: erwartet wird ein Anmeldename wie user@contoso.com",
                        ),
                    ));
                }
                Some(s.to_string())
            }
            Some(_) => {
                return Err(bad_key(
                    "account",
                    "expected a string",
                    "erwartet wird eine Zeichenkette",
                ));
            }
        };

        let protocols = match obj.get("protocols") {
            None | Some(Value::Null) => Protocols::ALL,
            Some(Value::Array(items)) => {
                let mut names = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(s) => names.push(s),
                        None => {
                            return Err(bad_key(
                                "protocols",
                                "expected a list of smtp, imap, pop3",
                                "erwartet wird eine Liste aus smtp, imap, pop3",
                            ));
                        }
                    }
                }
                Protocols::from_names(names)?
            }
            Some(_) => {
                return Err(bad_key(
                    "protocols",
                    "expected a list of smtp, imap, pop3",
                    "erwartet wird eine Liste aus smtp, imap, pop3",
                ));
            }
        };

        let flow = match obj.get("flow") {
            None | Some(Value::Null) => Flow::Browser,
            Some(Value::String(s)) => match s.as_str() {
                "browser" => Flow::Browser,
                "device" => Flow::Device,
                "app" => Flow::App,
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        Text::new(
                            "consent request key 'flow': expected browser, device or app",
                            "Schlüssel 'flow' der Anmeldeanfrage: erwartet wird browser, device oder app",
                        ),
                    ));
                }
            },
            Some(_) => {
                return Err(bad_key(
                    "flow",
                    "expected browser, device or app",
                    "erwartet wird browser, device oder app",
                ));
            }
        };

        let prompt = match obj.get("prompt") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if PROMPTS.contains(&s.as_str()) => Some(s.clone()),
            Some(Value::String(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        format!(
                            "consent request key 'prompt': expected one of {}",
                            PROMPTS.join(", ")
                        ),
                        format!(
                            "Schlüssel 'prompt' der Anmeldeanfrage: erwartet wird einer von {}",
                            PROMPTS.join(", ")
                        ),
                    ),
                ));
            }
            Some(_) => {
                return Err(bad_key(
                    "prompt",
                    "expected a string",
                    "erwartet wird eine Zeichenkette",
                ));
            }
        };

        let timeout_s = match obj.get("timeout_s") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_S,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=u64::from(MAX_TIMEOUT_S)).contains(&n) => n as u32,
                _ => {
                    return Err(bad_key(
                        "timeout_s",
                        "expected seconds between 1 and 3600",
                        "erwartet werden Sekunden zwischen 1 und 3600",
                    ));
                }
            },
        };

        let accept_other_account = match obj.get("accept_other_account") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(bad_key(
                    "accept_other_account",
                    "expected true or false",
                    "erwartet wird true oder false",
                ));
            }
        };

        if flow == Flow::App {
            if account.is_none() {
                return Err(invalid_config(
                    "flow app needs 'account': the mailbox the app token is used for".into(),
                    "flow app braucht 'account': das Postfach, für das das App-Token verwendet wird".into(),
                ));
            }
            if config.client_secret.is_none() {
                return Err(invalid_config(
                    "flow app needs a client_secret in the configuration (a confidential app registration)".into(),
                    "flow app braucht ein client_secret in der Konfiguration (eine vertrauliche App-Registrierung)".into(),
                ));
            }
            if config.scopes.app.is_none() {
                return Err(invalid_config(
                    "flow app needs scopes.app in the configuration".into(),
                    "flow app braucht scopes.app in der Konfiguration".into(),
                ));
            }
        }

        Ok(Self {
            account,
            protocols,
            flow,
            prompt,
            timeout_s,
            accept_other_account,
        })
    }
}

/// What a successful consent produced; the token manager stores it.
#[derive(Debug, Clone)]
pub struct ConsentOutcome {
    /// The name the grant is stored under: the request's account, else the
    /// signed-in user's `preferred_username` as given.
    pub account: String,
    pub protocols: Protocols,
    /// App-only (client credentials): no refresh token, no user.
    pub app: bool,
    pub tokens: TokenSet,
}

impl ConsentOutcome {
    /// The signed-in user's name from the id_token (none for app tokens).
    pub fn username(&self) -> Option<&str> {
        self.tokens
            .id
            .as_ref()
            .and_then(|c| c.preferred_username.as_deref())
    }

    /// The op's result JSON of the ABI (`account`, `username`, `tenant_id`,
    /// `scopes`, `expires_at`); never a secret.
    pub fn result_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("account".into(), self.account.clone().into());
        if let Some(u) = self.username() {
            m.insert("username".into(), u.into());
        }
        if let Some(t) = self.tokens.id.as_ref().and_then(|c| c.tid.clone()) {
            m.insert("tenant_id".into(), t.into());
        }
        m.insert("scopes".into(), json!(self.tokens.scopes));
        m.insert("expires_at".into(), self.tokens.expires_at.into());
        Value::Object(m)
    }
}

/// The op's state, as `info` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentState {
    Starting,
    WaitingForUser,
    /// Redeeming the code, or the outcome waits for the owner's `finish`.
    Exchanging,
    Done,
    Failed,
    Cancelled,
}

impl ConsentState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::WaitingForUser => "waiting_for_user",
            Self::Exchanging => "exchanging",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The flow's progress (before its result).
    progress: Option<ConsentState>,
    authorize_url: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    message: Option<String>,
    expires_at: Option<i64>,
    /// The flow's result.
    outcome: Option<std::result::Result<ConsentOutcome, Error>>,
    /// The owner's verdict after storing.
    finished: Option<std::result::Result<(), Error>>,
    /// `settle` is running the store closure.
    storing: bool,
}

/// One consent in progress (shared as `Arc`). See the module docs.
pub struct ConsentOp {
    flow: Flow,
    inner: Mutex<Inner>,
    cond: Condvar,
    cancel: CancellationToken,
    /// Serialises `settle`, so the store closure runs once.
    settle_lock: Mutex<()>,
}

impl std::fmt::Debug for ConsentOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentOp")
            .field("flow", &self.flow)
            .field("state", &self.state())
            .finish()
    }
}

impl ConsentOp {
    fn new(flow: Flow) -> Self {
        Self {
            flow,
            inner: Mutex::new(Inner {
                progress: Some(ConsentState::Starting),
                ..Inner::default()
            }),
            cond: Condvar::new(),
            cancel: CancellationToken::new(),
            settle_lock: Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// The current state.
    pub fn state(&self) -> ConsentState {
        Self::state_of(&self.lock())
    }

    fn state_of(inner: &Inner) -> ConsentState {
        match (&inner.finished, &inner.outcome) {
            (Some(Ok(())), _) => ConsentState::Done,
            (Some(Err(_)), _) => ConsentState::Failed,
            (None, Some(Ok(_))) => ConsentState::Exchanging,
            (None, Some(Err(e))) if e.kind == ErrorKind::Cancelled => ConsentState::Cancelled,
            (None, Some(Err(_))) => ConsentState::Failed,
            (None, None) => inner.progress.unwrap_or(ConsentState::Starting),
        }
    }

    /// The ABI's info JSON: `state` plus whichever of `authorize_url`,
    /// `user_code`, `verification_uri`, `message`, `expires_at` are known.
    pub fn info(&self) -> Value {
        let inner = self.lock();
        let mut m = Map::new();
        m.insert("state".into(), Self::state_of(&inner).as_str().into());
        if let Some(u) = &inner.authorize_url {
            m.insert("authorize_url".into(), u.clone().into());
        }
        if let Some(u) = &inner.user_code {
            m.insert("user_code".into(), u.clone().into());
        }
        if let Some(u) = &inner.verification_uri {
            m.insert("verification_uri".into(), u.clone().into());
        }
        if let Some(u) = &inner.message {
            m.insert("message".into(), u.clone().into());
        }
        if let Some(t) = inner.expires_at {
            m.insert("expires_at".into(), t.into());
        }
        Value::Object(m)
    }

    /// Blocks up to `timeout` for the flow's result. `None`: still running.
    /// Returns a clone of the result every time once there is one (or the
    /// owner's failure after `finish(Err)`).
    pub fn wait(&self, timeout: Duration) -> Option<std::result::Result<ConsentOutcome, Error>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut inner = self.lock();
        loop {
            if let Some(Err(e)) = &inner.finished {
                return Some(Err(e.clone()));
            }
            if let Some(r) = &inner.outcome {
                return Some(r.clone());
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            inner = self
                .cond
                .wait_timeout(inner, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The owner's verdict after storing the outcome: `Ok` → `done`,
    /// `Err` → `failed`. Returns false (and changes nothing) unless the flow
    /// succeeded and nobody finished or cancelled it yet.
    pub fn finish(&self, result: std::result::Result<(), Error>) -> bool {
        let mut inner = self.lock();
        if inner.finished.is_some() || !matches!(inner.outcome, Some(Ok(_))) {
            return false;
        }
        inner.finished = Some(result);
        inner.storing = false;
        drop(inner);
        self.cond.notify_all();
        true
    }

    /// Waits like [`wait`](Self::wait); when the flow succeeded and the
    /// outcome is not settled yet, runs `store` on this thread (exactly once
    /// across all callers) and finishes the op with its result. Returns the
    /// outcome, or the failure (of the flow or of `store`).
    pub fn settle<F>(
        &self,
        timeout: Duration,
        store: F,
    ) -> Option<std::result::Result<ConsentOutcome, Error>>
    where
        F: FnOnce(&ConsentOutcome) -> std::result::Result<(), Error>,
    {
        let outcome = match self.wait(timeout)? {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let _one = self
            .settle_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        {
            let mut inner = self.lock();
            match (&inner.finished, &inner.outcome) {
                (Some(Ok(())), _) => return Some(Ok(outcome)),
                (Some(Err(e)), _) => return Some(Err(e.clone())),
                (None, Some(Err(e))) => return Some(Err(e.clone())),
                _ => inner.storing = true,
            }
        }
        let stored = store(&outcome);
        self.finish(stored.clone());
        Some(stored.map(|()| outcome))
    }

    /// Cancels the op (idempotent, any thread). See the module docs.
    pub fn cancel(&self) {
        self.cancel.cancel();
        let mut inner = self.lock();
        let unsettled =
            inner.finished.is_none() && !inner.storing && matches!(inner.outcome, Some(Ok(_)));
        if unsettled {
            inner.outcome = Some(Err(Error::cancelled()));
            drop(inner);
            self.cond.notify_all();
            log::info!("consent cancelled before its grant was stored");
        }
    }

    /// True once cancel was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    // ---- used by the flows ----

    pub(crate) fn set_progress(&self, state: ConsentState) {
        let mut inner = self.lock();
        if inner.outcome.is_none() {
            inner.progress = Some(state);
        }
    }

    pub(crate) fn set_browser(&self, authorize_url: String, expires_at: i64) {
        let mut inner = self.lock();
        inner.authorize_url = Some(authorize_url);
        inner.expires_at = Some(expires_at);
        if inner.outcome.is_none() {
            inner.progress = Some(ConsentState::WaitingForUser);
        }
    }

    pub(crate) fn set_device(&self, dc: &crate::auth::DeviceCode) {
        let mut inner = self.lock();
        inner.user_code = Some(dc.user_code.clone());
        inner.verification_uri = Some(dc.verification_uri.clone());
        inner.message = Some(dc.message.clone());
        inner.expires_at = Some(dc.expires_at);
        if inner.outcome.is_none() {
            inner.progress = Some(ConsentState::WaitingForUser);
        }
    }

    fn complete(&self, result: std::result::Result<ConsentOutcome, Error>) {
        let mut inner = self.lock();
        if inner.outcome.is_some() {
            return;
        }
        match &result {
            Ok(o) => log::info!(
                "consent ({}) finished for {}; waiting to be stored",
                self.flow.as_str(),
                o.account
            ),
            Err(e) => log::info!(
                "consent ({}) ended: {:?} {}",
                self.flow.as_str(),
                e.kind,
                e.provider_code.as_deref().unwrap_or("")
            ),
        }
        inner.outcome = Some(result);
        drop(inner);
        self.cond.notify_all();
    }
}

/// Completes the op with `Cancelled` if its task is dropped unfinished
/// (the runtime shut down with the context).
struct CompleteOnDrop(Arc<ConsentOp>);

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        self.0.complete(Err(Error::cancelled()));
    }
}

/// Starts a consent on `runtime` and returns at once (see the module docs).
pub fn begin(
    client: Arc<OAuthClient>,
    config: Arc<Config>,
    runtime: &tokio::runtime::Handle,
    req: ConsentRequest,
) -> Result<Arc<ConsentOp>> {
    let op = Arc::new(ConsentOp::new(req.flow));
    let timeout = Duration::from_secs(u64::from(req.timeout_s));
    let flow: std::pin::Pin<Box<dyn std::future::Future<Output = Result<ConsentOutcome>> + Send>> =
        match req.flow {
            Flow::Browser => {
                if config.browser == Browser::System && session::is_service_session() {
                    return Err(Error::new(
                        ErrorKind::InvalidState,
                        Text::new(
                            "the browser sign-in cannot run in a Windows service (no desktop to show a browser on)",
                            "die Anmeldung im Browser kann nicht in einem Windows-Dienst laufen (kein Desktop für einen Browser)",
                        ),
                    )
                    .with_hint(Text::new(
                        "Use flow device, or run the browser sign-in in the desktop application (the grant can be shared through cache.protection machine or a host store).",
                        "flow device verwenden oder die Anmeldung im Browser in der Desktop-Anwendung ausführen (die Anmeldung lässt sich über cache.protection machine oder einen Host-Speicher teilen).",
                    )));
                }
                let prepared = browser::prepare(&client, &config, &req)?;
                op.set_browser(
                    prepared.authorize_url.clone(),
                    crate::auth::now().saturating_add(i64::from(req.timeout_s)),
                );
                Box::pin(browser::run(
                    client,
                    config,
                    req.clone(),
                    op.clone(),
                    prepared,
                ))
            }
            Flow::Device => {
                if config.endpoints.device_code.is_none() {
                    return Err(invalid_config(
                        "configuration key 'endpoints.device_code': required for the device sign-in".into(),
                        "Konfigurationsschlüssel 'endpoints.device_code': für die Geräteanmeldung erforderlich".into(),
                    ));
                }
                let scopes = crate::auth::delegated_scopes(&config, req.protocols)?;
                Box::pin(device::run(client, req.clone(), op.clone(), scopes))
            }
            Flow::App => {
                let r = req.clone();
                let c = client.clone();
                let o = op.clone();
                Box::pin(async move {
                    o.set_progress(ConsentState::Exchanging);
                    let tokens = c.client_credentials().await?;
                    Ok(ConsentOutcome {
                        account: r.account.clone().unwrap_or_default(),
                        protocols: r.protocols,
                        app: true,
                        tokens,
                    })
                })
            }
        };
    log::info!(
        "consent started: flow={} protocols={} timeout={}s",
        req.flow.as_str(),
        req.protocols.names().join(" "),
        req.timeout_s
    );
    let cancel = op.cancel.clone();
    let timeout_s = req.timeout_s;
    let guarded = async move {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(Error::cancelled()),
            _ = tokio::time::sleep(timeout) => Err(Error::new(
                ErrorKind::Timeout,
                Text::new(
                    format!("the sign-in was not completed within {timeout_s} s"),
                    format!("die Anmeldung wurde nicht innerhalb von {timeout_s} s abgeschlossen"),
                ),
            )),
            r = flow => r,
        }
    };
    let inner = runtime.spawn(guarded);
    let guard = CompleteOnDrop(op.clone());
    runtime.spawn(async move {
        let result = match inner.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => Err(Error::internal("the consent flow panicked")),
            Err(_) => Err(Error::cancelled()),
        };
        guard.0.complete(result);
    });
    Ok(op)
}

/// Checks the signed-in user against the requested account and names the
/// grant.
pub(crate) fn resolve_account(req: &ConsentRequest, tokens: &TokenSet) -> Result<String> {
    let signed_in = tokens
        .id
        .as_ref()
        .and_then(|c| c.preferred_username.clone());
    match (&req.account, signed_in) {
        (Some(wanted), Some(got)) if !wanted.eq_ignore_ascii_case(&got) && !req.accept_other_account => {
            Err(Error::new(
                ErrorKind::AccountMismatch,
                Text::new(
                    format!("signed in as {got}, but the sign-in was for {wanted}; the grant was not kept"),
                    format!("angemeldet als {got}, die Anmeldung war aber für {wanted}; die Anmeldung wurde nicht übernommen"),
                ),
            )
            .with_hint(Text::new(
                format!("Sign in again as {wanted} (use another browser profile or sign out first), or allow another account with accept_other_account."),
                format!("Erneut als {wanted} anmelden (anderes Browserprofil verwenden oder vorher abmelden) oder mit accept_other_account ein anderes Konto zulassen."),
            )))
        }
        (Some(wanted), _) => Ok(wanted.clone()),
        (None, Some(got)) => Ok(got),
        (None, None) => Err(Error::new(
            ErrorKind::ProviderError,
            Text::new(
                "the identity provider did not say who signed in (no id_token with preferred_username)",
                "der Identitätsanbieter hat nicht mitgeteilt, wer sich angemeldet hat (kein id_token mit preferred_username)",
            ),
        )
        .with_hint(Text::new(
            "Give 'account' in the consent request.",
            "'account' in der Anmeldeanfrage angeben.",
        ))),
    }
}

/// Is this process in session 0 (a Windows service, no desktop)?
mod session {
    #[cfg(windows)]
    pub fn is_service_session() -> bool {
        // Not compiled on the Linux build machines; kept minimal on purpose.
        #[link(name = "kernel32")]
        unsafe extern "system" {
            fn GetCurrentProcessId() -> u32;
            fn ProcessIdToSessionId(process_id: u32, session_id: *mut u32) -> i32;
        }
        let mut session = u32::MAX;
        // SAFETY: plain Win32 calls; `session` is a valid out pointer.
        let ok = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut session) };
        ok != 0 && session == 0
    }

    #[cfg(not(windows))]
    pub fn is_service_session() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: bool) -> Config {
        let s = if secret {
            r#","client_secret":"s3cret-value-123""#
        } else {
            ""
        };
        crate::config::parse(&format!(
            r#"{{"provider":"custom","authority":"https://login.example","tenant":"t1","client_id":"cid",
               "scopes":{{"smtp":"https://outlook.office.com/SMTP.Send","imap":"https://outlook.office.com/IMAP.AccessAsUser.All",
               "pop3":"https://outlook.office.com/POP.AccessAsUser.All","app":"https://outlook.office365.com/.default"}}{s}}}"#
        ))
        .unwrap()
        .config
    }

    #[test]
    fn defaults() {
        let r = ConsentRequest::parse("{}", &config(false)).unwrap();
        assert_eq!(r.flow, Flow::Browser);
        assert_eq!(r.protocols, Protocols::ALL);
        assert_eq!(r.timeout_s, DEFAULT_TIMEOUT_S);
        assert!(!r.accept_other_account && r.account.is_none() && r.prompt.is_none());
    }

    #[test]
    fn full_request() {
        let r = ConsentRequest::parse(
            r#"{"account":"User@Contoso.com","protocols":["smtp","imap"],"flow":"device","prompt":"select_account","timeout_s":60,"accept_other_account":true}"#,
            &config(false),
        )
        .unwrap();
        assert_eq!(r.account.as_deref(), Some("User@Contoso.com"));
        assert_eq!(r.protocols.names(), vec!["smtp", "imap"]);
        assert_eq!(
            (r.flow, r.timeout_s, r.accept_other_account),
            (Flow::Device, 60, true)
        );
    }

    #[test]
    fn refusals() {
        let c = config(false);
        let kind = |j: &str| ConsentRequest::parse(j, &c).unwrap_err().kind;
        let e = ConsentRequest::parse(r#"{"acount":"x"}"#, &c).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(e.message.en.contains("'acount'"));
        assert_eq!(
            kind(r#"{"account":"a\r\nb@c"}"#),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(r#"{"timeout_s":0}"#), ErrorKind::InvalidConfig);
        assert_eq!(kind(r#"{"timeout_s":3601}"#), ErrorKind::InvalidConfig);
        assert_eq!(kind(r#"{"flow":"fax"}"#), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(r#"{"protocols":["smtp","nntp"]}"#),
            ErrorKind::InvalidArgument
        );
        assert_eq!(kind(r#"{"protocols":[]}"#), ErrorKind::InvalidArgument);
        assert_eq!(kind(r#"{"prompt":"maybe"}"#), ErrorKind::InvalidArgument);
        assert_eq!(
            kind(r#"{"account":"a","account":"b"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(kind(r#"[1]"#), ErrorKind::InvalidConfig);
        assert_eq!(
            kind(r#"{"flow":"app","account":"svc@c"}"#),
            ErrorKind::InvalidConfig
        );
        assert_eq!(kind(r#"{"flow":"app"}"#), ErrorKind::InvalidConfig);
        assert!(
            ConsentRequest::parse(r#"{"flow":"app","account":"svc@c"}"#, &config(true)).is_ok()
        );
    }

    fn tokens(user: Option<&str>) -> TokenSet {
        TokenSet {
            access_token: crate::secret::Secret::new("at"),
            refresh_token: None,
            expires_at: 10,
            issued_at: 0,
            scopes: vec![],
            id: user.map(|u| crate::auth::IdClaims {
                preferred_username: Some(u.into()),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn account_rules() {
        let mut r =
            ConsentRequest::parse(r#"{"account":"Alice@Contoso.test"}"#, &config(false)).unwrap();
        assert_eq!(
            resolve_account(&r, &tokens(Some("alice@contoso.test"))).unwrap(),
            "Alice@Contoso.test"
        );
        let e = resolve_account(&r, &tokens(Some("bob@contoso.test"))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AccountMismatch);
        assert!(
            e.message.en.contains("bob@contoso.test")
                && e.message.en.contains("Alice@Contoso.test")
        );
        r.accept_other_account = true;
        assert_eq!(
            resolve_account(&r, &tokens(Some("bob@contoso.test"))).unwrap(),
            "Alice@Contoso.test"
        );
        let r = ConsentRequest::parse("{}", &config(false)).unwrap();
        assert_eq!(
            resolve_account(&r, &tokens(Some("Bob@contoso.test"))).unwrap(),
            "Bob@contoso.test"
        );
        assert_eq!(
            resolve_account(&r, &tokens(None)).unwrap_err().kind,
            ErrorKind::ProviderError
        );
    }

    #[test]
    fn finish_protocol() {
        let op = ConsentOp::new(Flow::App);
        assert!(op.wait(Duration::from_millis(10)).is_none());
        assert_eq!(op.state(), ConsentState::Starting);
        assert!(!op.finish(Ok(())));
        op.complete(Ok(ConsentOutcome {
            account: "a".into(),
            protocols: Protocols::ALL,
            app: true,
            tokens: tokens(None),
        }));
        assert_eq!(op.state(), ConsentState::Exchanging);
        assert!(op.wait(Duration::ZERO).unwrap().is_ok());
        let mut calls = 0;
        let r = op.settle(Duration::ZERO, |_| {
            calls += 1;
            Ok(())
        });
        assert!(r.unwrap().is_ok());
        let r = op.settle(Duration::ZERO, |_| {
            calls += 1;
            Ok(())
        });
        assert!(r.unwrap().is_ok());
        assert_eq!(calls, 1);
        assert_eq!(op.state(), ConsentState::Done);
        op.cancel();
        assert_eq!(op.state(), ConsentState::Done);
        assert_eq!(op.info()["state"], "done");
    }

    #[test]
    fn cancel_drops_an_unstored_outcome_and_failed_store_fails() {
        let op = ConsentOp::new(Flow::App);
        op.complete(Ok(ConsentOutcome {
            account: "a".into(),
            protocols: Protocols::ALL,
            app: true,
            tokens: tokens(None),
        }));
        op.cancel();
        op.cancel();
        assert_eq!(op.state(), ConsentState::Cancelled);
        assert_eq!(
            op.wait(Duration::ZERO).unwrap().unwrap_err().kind,
            ErrorKind::Cancelled
        );
        assert!(!op.finish(Ok(())));

        let op = ConsentOp::new(Flow::App);
        op.complete(Ok(ConsentOutcome {
            account: "a".into(),
            protocols: Protocols::ALL,
            app: true,
            tokens: tokens(None),
        }));
        let r = op.settle(Duration::ZERO, |_| {
            Err(Error::plain(ErrorKind::CacheIo, "disk full"))
        });
        assert_eq!(r.unwrap().unwrap_err().kind, ErrorKind::CacheIo);
        assert_eq!(op.state(), ConsentState::Failed);
        assert_eq!(
            op.wait(Duration::ZERO).unwrap().unwrap_err().kind,
            ErrorKind::CacheIo
        );
    }
}
