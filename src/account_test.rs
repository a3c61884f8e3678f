//! The account test: the "Test settings" button of a host's account dialog
//! (ABI `mailoauth_account_test_begin`). Without sending or changing
//! anything it tries, in this order:
//!
//! - `token`: a silent access token for the requested protocols;
//! - `smtp`: connect, TLS, EHLO and AUTH (XOAUTH2 / OAUTHBEARER), no MAIL FROM;
//! - `imap`: login and SELECT of INBOX, then LOGOUT;
//! - `pop3`: login and STAT, then QUIT (nothing is marked deleted).
//!
//! Each step reports its outcome, the server's reply where there is one and
//! how long it took. A failed step never stops the others: when the token
//! fails, the protocol steps still run and report their own failure (for
//! them, usually the same `ConsentRequired`).
//!
//! Where it runs: [`begin`] starts the steps on a thread of their own and
//! returns an [`AccountTestOp`] to wait for, look at or cancel. When the
//! context keeps its grants in the host's store, whose callbacks may run
//! only on a thread inside a library call, the tokens are fetched in
//! [`begin`] on the host's thread and only the server steps run in the
//! background. [`run`] does everything on the calling thread (the CLI).

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;
use crate::mailbox::handle::{OpenRequest, Start};
use crate::mailbox::net::Interrupt;
use crate::mailbox::{imap, pop3, sasl};
use crate::protocol::{Protocol, Protocols};
use crate::request::{Doc, shown};
use crate::secret::Secret;

const DOC: Doc = Doc {
    en: "account test request",
    de: "Kontotest-Anfrage",
};

/// How long one step may take when the request gives no `timeout_ms`.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest `timeout_ms` a request may ask for.
pub const MAX_STEP_TIMEOUT: Duration = Duration::from_secs(600);

/// A parsed account test request: `{"account": "…", "protocols":
/// ["smtp","imap","pop3"], "timeout_ms": 30000}` (`protocols` defaults to
/// all three, `timeout_ms` bounds each step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRequest {
    pub account: String,
    pub protocols: Protocols,
    pub step_timeout: Duration,
}

#[derive(Debug, Default, Deserialize)]
struct RawRequest {
    account: Option<String>,
    protocols: Option<Vec<String>>,
    timeout_ms: Option<i64>,
}

impl TestRequest {
    /// Parses the request strictly (size bounded, duplicate and unknown keys
    /// refused with `INVALID_CONFIG` naming the key; CR/LF/NUL in the
    /// account `INVALID_ARGUMENT`).
    pub fn parse(json: &str, config: &crate::Config) -> Result<Self> {
        let raw: RawRequest = DOC.parse(json, config.max_json_bytes)?;
        let Some(account) = raw.account else {
            return Err(DOC.bad_key(
                "account",
                "required: the account to test (user@contoso.com)",
                "erforderlich: das zu testende Konto (user@contoso.com)",
            ));
        };
        if account.chars().any(|c| matches!(c, '\r' | '\n' | '\0')) {
            return Err(DOC.line_break("account"));
        }
        let account = account.trim().to_string();
        if account.is_empty() {
            return Err(DOC.bad_key("account", "must not be empty", "darf nicht leer sein"));
        }
        let protocols = match raw.protocols {
            None => Protocols::ALL,
            Some(list) => {
                let mut set = Protocols::NONE;
                for name in &list {
                    match Protocol::parse(name) {
                        Some(p) => set.insert(p),
                        None => {
                            return Err(DOC.bad_key(
                                "protocols",
                                format!("'{}' is not smtp, imap or pop3", shown(name)),
                                format!("'{}' ist weder smtp noch imap noch pop3", shown(name)),
                            ));
                        }
                    }
                }
                if set.is_empty() {
                    return Err(DOC.bad_key(
                        "protocols",
                        "name at least one of smtp, imap, pop3",
                        "mindestens eines von smtp, imap, pop3 nennen",
                    ));
                }
                set
            }
        };
        let step_timeout = match raw.timeout_ms {
            None => DEFAULT_STEP_TIMEOUT,
            Some(ms) if ms > 0 && (ms as u128) <= MAX_STEP_TIMEOUT.as_millis() => {
                Duration::from_millis(ms as u64)
            }
            Some(_) => {
                return Err(DOC.bad_key(
                    "timeout_ms",
                    format!(
                        "must be between 1 and {} milliseconds",
                        MAX_STEP_TIMEOUT.as_millis()
                    ),
                    format!(
                        "muss zwischen 1 und {} Millisekunden liegen",
                        MAX_STEP_TIMEOUT.as_millis()
                    ),
                ));
            }
        };
        Ok(Self {
            account,
            protocols,
            step_timeout,
        })
    }
}

/// Which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    Token,
    Smtp,
    Imap,
    Pop3,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Smtp => "smtp",
            Self::Imap => "imap",
            Self::Pop3 => "pop3",
        }
    }

    fn of(p: Protocol) -> Self {
        match p {
            Protocol::Smtp => Self::Smtp,
            Protocol::Imap => Self::Imap,
            Protocol::Pop3 => Self::Pop3,
        }
    }
}

/// What a successful step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    pub message: Text,
    /// The server's reply (POP3 STAT), when the step has one.
    pub server_reply: Option<String>,
    /// When the access token expires (token step; Unix seconds).
    pub expires_at: Option<i64>,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub outcome: std::result::Result<Passed, Error>,
    /// How long the step took, in milliseconds.
    pub ms: u64,
}

impl Step {
    pub fn is_ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// The state of a running test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestState {
    Running,
    Done,
    Cancelled,
    /// Stopped by a bug (a caught panic): the op answers `INTERNAL`.
    Failed,
}

impl TestState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

struct Progress {
    steps: Vec<Step>,
    state: TestState,
    /// Why it ended `Failed` (a bug caught on the test's thread).
    failure: Option<Error>,
}

/// A running or finished account test.
pub struct AccountTestOp {
    progress: Mutex<Progress>,
    cond: Condvar,
    cancel: Cancel,
}

impl std::fmt::Debug for AccountTestOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountTestOp")
            .field("state", &self.state())
            .finish()
    }
}

impl AccountTestOp {
    fn new() -> Self {
        Self {
            progress: Mutex::new(Progress {
                steps: Vec::new(),
                state: TestState::Running,
                failure: None,
            }),
            cond: Condvar::new(),
            cancel: Cancel::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> TestState {
        self.lock().state
    }

    /// The steps finished so far.
    pub fn steps(&self) -> Vec<Step> {
        self.lock().steps.clone()
    }

    fn push(&self, step: Step) {
        self.lock().steps.push(step);
        self.cond.notify_all();
    }

    fn finish(&self) {
        let mut p = self.lock();
        if p.state == TestState::Running {
            p.state = if self.cancel.is_cancelled() {
                TestState::Cancelled
            } else {
                TestState::Done
            };
        }
        drop(p);
        self.cond.notify_all();
    }

    /// Ends the test as failed (a panic on its thread: a bug).
    fn fail(&self, e: Error) {
        let mut p = self.lock();
        p.state = TestState::Failed;
        p.failure = Some(e);
        drop(p);
        self.cond.notify_all();
    }

    /// Waits up to `timeout`: None while it still runs, the steps when it
    /// is done, `Cancelled` when it was cancelled.
    pub fn wait(&self, timeout: Duration) -> Option<Result<Vec<Step>>> {
        let deadline = Instant::now().checked_add(timeout);
        let mut p = self.lock();
        loop {
            match p.state {
                TestState::Done => return Some(Ok(p.steps.clone())),
                TestState::Cancelled => return Some(Err(Error::cancelled())),
                TestState::Failed => {
                    return Some(Err(p
                        .failure
                        .clone()
                        .unwrap_or_else(|| Error::internal("the account test failed"))));
                }
                TestState::Running => {}
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            p = self
                .cond
                .wait_timeout(p, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Cancels the test (any thread): the running step ends promptly, the
    /// rest are skipped and the test ends `Cancelled`. A finished test stays
    /// as it was.
    pub fn cancel(&self) {
        if self.state() == TestState::Running {
            self.cancel.fire();
        }
    }
}

/// Cancellation of one test: a token for the async steps and the
/// interrupt of the mailbox session running now.
#[derive(Default)]
struct Cancel {
    token: CancellationToken,
    interrupt: Mutex<Option<Interrupt>>,
}

impl Cancel {
    fn fire(&self) {
        self.token.cancel();
        if let Some(i) = self
            .interrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            i.fire();
        }
    }

    fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A fresh interrupt for the next mailbox session, fired at once when
    /// the test is already cancelled.
    fn interrupt(&self) -> Interrupt {
        let i = Interrupt::new();
        let mut slot = self
            .interrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(i.clone());
        drop(slot);
        if self.is_cancelled() {
            i.fire();
        }
        i
    }
}

/// Where the protocol steps get their tokens.
enum TokenSource {
    /// From the context, on the thread that runs the steps.
    Live,
    /// Fetched before the steps started (host store: on the host's thread).
    Fetched(Vec<(Protocol, Result<Secret>)>),
}

/// Starts an account test in the background (see the module docs).
pub fn begin(ctx: &Arc<Context>, request_json: &str) -> Result<Arc<AccountTestOp>> {
    crate::context::refuse_inside_runtime()?;
    let req = TestRequest::parse(request_json, ctx.config())?;
    let op = Arc::new(AccountTestOp::new());
    let source = if ctx.uses_host_store() {
        // The host's store callbacks run only on the host's own thread.
        op.push(token_step(ctx, &req, &op.cancel));
        let fetched = req
            .protocols
            .iter()
            .map(|p| {
                (
                    p,
                    silent_token(ctx, &req, Protocols::of(p), false, &op.cancel).map(|(t, _)| t),
                )
            })
            .collect();
        TokenSource::Fetched(fetched)
    } else {
        TokenSource::Live
    };
    let (c, o) = (ctx.clone(), op.clone());
    std::thread::Builder::new()
        .name("mailoauth-account-test".into())
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_steps(&c, &req, &o.cancel, source, |s| o.push(s));
            }));
            match ran {
                Ok(()) => o.finish(),
                Err(_) => {
                    log::error!("the account test's thread panicked (a bug in mailoauth)");
                    o.fail(Error::internal("the account test stopped on a bug"));
                }
            }
        })
        .map_err(|e| Error::internal(format!("could not start the account test: {e}")))?;
    Ok(op)
}

/// Runs the whole test on the calling thread, handing each step to
/// `on_step` as it finishes (the CLI prints them as they come).
pub fn run(ctx: &Context, req: &TestRequest, mut on_step: impl FnMut(&Step)) -> Result<Vec<Step>> {
    crate::context::refuse_inside_runtime()?;
    let cancel = Cancel::default();
    let mut steps = Vec::new();
    run_steps(ctx, req, &cancel, TokenSource::Live, |s| {
        on_step(&s);
        steps.push(s);
    });
    Ok(steps)
}

fn run_steps(
    ctx: &Context,
    req: &TestRequest,
    cancel: &Cancel,
    source: TokenSource,
    mut emit: impl FnMut(Step),
) {
    let mut fetched = match source {
        TokenSource::Live => {
            emit(token_step(ctx, req, cancel));
            None
        }
        TokenSource::Fetched(list) => Some(list),
    };
    for p in req.protocols.iter() {
        if cancel.is_cancelled() {
            return;
        }
        let start = Instant::now();
        let live = fetched.is_none();
        let token = match fetched.as_mut() {
            None => silent_token(ctx, req, Protocols::of(p), false, cancel).map(|(t, _)| t),
            Some(list) => match list.iter().position(|(q, _)| *q == p) {
                Some(i) => list.swap_remove(i).1,
                None => Err(Error::internal("no token was fetched for the step")),
            },
        };
        let check = |t: &Secret| match p {
            Protocol::Smtp => smtp_check(ctx, req, t, cancel),
            Protocol::Imap => imap_check(ctx, req, t, cancel),
            Protocol::Pop3 => pop3_check(ctx, req, t, cancel),
        };
        let outcome = token
            .and_then(|t| match check(&t) {
                // As a real send or poll does: a rejected token gets one
                // forced refresh and one more try. When the identity provider
                // refuses that refresh (a revoked grant, a missing consent)
                // its answer is the root cause and is reported; otherwise
                // (no refresh token, provider unreachable) the server's
                // rejection with its reply and hint is. Host-store grants are
                // refreshed only on the host's thread, so their steps report
                // the first answer.
                Err(rejected)
                    if live
                        && rejected.kind == ErrorKind::AuthRejected
                        && can_refresh(ctx, req) =>
                {
                    match silent_token(ctx, req, Protocols::of(p), true, cancel) {
                        Ok((fresh, _)) => check(&fresh),
                        Err(e)
                            if e.kind == ErrorKind::ConsentRequired
                                && e.provider_code.is_some() =>
                        {
                            Err(e)
                        }
                        Err(_) => Err(rejected),
                    }
                }
                other => other,
            })
            .map_err(|e| with_server_hint(e, p));
        if let Err(e) = &outcome {
            log::info!(
                "account test of {}: the {} step failed ({:?})",
                req.account,
                p.as_str(),
                e.kind
            );
        }
        emit(Step {
            kind: StepKind::of(p),
            outcome,
            ms: elapsed_ms(start),
        });
    }
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Runs `fut` on the context's runtime from this (non-runtime) thread,
/// ending early when the test or the context is cancelled, or after
/// `timeout`.
fn block<T>(
    ctx: &Context,
    cancel: &Cancel,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let Some(handle) = ctx.handle() else {
        return Err(Error::internal("the runtime is gone"));
    };
    let ctx_cancel = ctx.cancel_token();
    let own = cancel.token.clone();
    handle.block_on(async move {
        tokio::select! {
            biased;
            _ = own.cancelled() => Err(Error::cancelled()),
            _ = ctx_cancel.cancelled() => Err(Error::cancelled()),
            r = tokio::time::timeout(timeout, fut) => r.unwrap_or_else(|_| Err(step_timeout(timeout))),
        }
    })
}

fn step_timeout(t: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        Text::new(
            format!("the step did not finish within {} ms", t.as_millis()),
            format!(
                "der Schritt wurde nicht innerhalb von {} ms fertig",
                t.as_millis()
            ),
        ),
    )
    .transient()
}

/// Whether a forced refresh can get another token: a refresh token, or an
/// app grant (client credentials). Without either it would only mark the
/// grant as needing consent.
fn can_refresh(ctx: &Context, req: &TestRequest) -> bool {
    ctx.grant_store()
        .ok()
        .and_then(|store| store.load(&req.account).ok().flatten())
        .is_some_and(|g| g.app || g.refresh_token.is_some())
}

/// A silent token covering `wanted`, with its expiry when the store knows it.
fn silent_token(
    ctx: &Context,
    req: &TestRequest,
    wanted: Protocols,
    force_refresh: bool,
    cancel: &Cancel,
) -> Result<(Secret, Option<i64>)> {
    let store = ctx.grant_store()?;
    let client = ctx.oauth()?;
    let account = req.account.as_str();
    let token = block(ctx, cancel, req.step_timeout, async {
        ctx.tokens()
            .get(&store, &client, account, wanted, force_refresh)
            .await
    })?;
    let expires = store.load(account).ok().flatten().and_then(|g| {
        g.access_token
            .as_ref()
            .filter(|a| a.token.expose() == token.expose())
            .map(|a| a.expires_at)
    });
    Ok((token, expires))
}

fn token_step(ctx: &Context, req: &TestRequest, cancel: &Cancel) -> Step {
    let start = Instant::now();
    let outcome = silent_token(ctx, req, req.protocols, false, cancel).map(|(_, expires_at)| {
        let names = req.protocols.names().join(", ");
        let message = match expires_at {
            Some(at) => {
                let left = (at - crate::auth::now()).max(0) / 60;
                Text::new(
                    format!(
                        "a token for {names} is available without signing in (valid for {left} more minutes)"
                    ),
                    format!(
                        "ein Token für {names} ist ohne Anmeldung verfügbar (noch {left} Minuten gültig)"
                    ),
                )
            }
            None => Text::new(
                format!("a token for {names} is available without signing in"),
                format!("ein Token für {names} ist ohne Anmeldung verfügbar"),
            ),
        };
        Passed {
            message,
            server_reply: None,
            expires_at,
        }
    });
    Step {
        kind: StepKind::Token,
        outcome,
        ms: elapsed_ms(start),
    }
}

/// A connection failure without a hint of its own gets one that names the
/// configuration keys to check.
fn with_server_hint(e: Error, p: Protocol) -> Error {
    if e.hint.is_some() {
        return e;
    }
    let p = p.as_str();
    let hint = match e.kind {
        ErrorKind::Network | ErrorKind::Timeout => Text::new(
            format!(
                "Check servers.{p}.host and servers.{p}.port, that the server runs, and that no firewall or proxy blocks the connection."
            ),
            format!(
                "servers.{p}.host und servers.{p}.port prüfen, ob der Server läuft und ob eine Firewall oder ein Proxy die Verbindung blockiert."
            ),
        ),
        ErrorKind::Tls => Text::new(
            format!(
                "Check that servers.{p}.security fits the port (tls for implicit TLS such as 465/993/995, starttls for 587/143/110) and that the server's certificate is trusted (tls.ca_file) and names servers.{p}.host."
            ),
            format!(
                "Prüfen, ob servers.{p}.security zum Port passt (tls für implizites TLS wie 465/993/995, starttls für 587/143/110) und ob dem Zertifikat des Servers vertraut wird (tls.ca_file) und es servers.{p}.host nennt."
            ),
        ),
        _ => return e,
    };
    e.with_hint(hint)
}

fn no_server(p: Protocol) -> Error {
    let p = p.as_str();
    Error::new(
        ErrorKind::InvalidConfig,
        Text::new(
            format!("no {p} server is configured (servers.{p})"),
            format!("kein {p}-Server konfiguriert (servers.{p})"),
        ),
    )
    .with_hint(Text::new(
        format!("Set servers.{p} in the configuration, or choose a provider that fills it in."),
        format!(
            "servers.{p} in der Konfiguration setzen oder einen Anbieter wählen, der ihn vorgibt."
        ),
    ))
}

/// Connect, TLS, EHLO, AUTH; never MAIL FROM.
fn smtp_check(ctx: &Context, req: &TestRequest, token: &Secret, cancel: &Cancel) -> Result<Passed> {
    use crate::smtp::connection::{Connection, Endpoint, Mechanism};
    let config = ctx.config();
    let server = config
        .servers
        .smtp
        .clone()
        .ok_or_else(|| no_server(Protocol::Smtp))?;
    let mut ep = Endpoint::new(config, server)?;
    ep.io_timeout = ep.io_timeout.min(req.step_timeout);
    ep.connect_timeout = ep.connect_timeout.min(req.step_timeout);
    let (host, port) = (ep.server.host.clone(), ep.server.port);
    let account = req.account.as_str();
    let mech = block(ctx, cancel, req.step_timeout, async {
        let mut conn = Connection::open(&ep).await?;
        let r = conn.authenticate(account, token).await;
        conn.close().await;
        r
    })?;
    let mech = match mech {
        Mechanism::Xoauth2 => "XOAUTH2",
        Mechanism::OAuthBearer => "OAUTHBEARER",
    };
    Ok(Passed {
        message: Text::new(
            format!("signed in to {host}:{port} as {account} with {mech} (nothing was sent)"),
            format!(
                "bei {host}:{port} als {account} mit {mech} angemeldet (nichts wurde gesendet)"
            ),
        ),
        server_reply: None,
        expires_at: None,
    })
}

/// The mailbox endpoint of the configuration for `p`, with the checks a
/// mailbox open makes (trusted host, plaintext only on loopback).
fn mailbox_endpoint(
    ctx: &Context,
    req: &TestRequest,
    p: Protocol,
) -> Result<crate::mailbox::net::Endpoint> {
    let config = ctx.config();
    let configured = match p {
        Protocol::Pop3 => &config.servers.pop3,
        _ => &config.servers.imap,
    };
    if configured.is_none() {
        return Err(no_server(p));
    }
    let open = OpenRequest {
        account: req.account.clone(),
        mailbox: req.account.clone(),
        protocol: p,
        folder: "INBOX".into(),
        start: Start::All,
        lock_timeout: Duration::ZERO,
        server: None,
        timeout: Some(req.step_timeout),
    };
    crate::mailbox::handle::endpoint(config, &open)
}

/// Runs a blocking mailbox session with the test's interrupt, fired also
/// when the context is cancelled.
fn with_interrupt<T>(
    ctx: &Context,
    cancel: &Cancel,
    f: impl FnOnce(&Interrupt) -> Result<T>,
) -> Result<T> {
    let interrupt = cancel.interrupt();
    let done = CancellationToken::new();
    if let Some(h) = ctx.handle() {
        let (ctx_cancel, d, i) = (ctx.cancel_token(), done.clone(), interrupt.clone());
        h.spawn(async move {
            tokio::select! {
                _ = ctx_cancel.cancelled() => i.fire(),
                _ = d.cancelled() => {}
            }
        });
    }
    let r = f(&interrupt);
    done.cancel();
    // A cancel shuts the socket down: whatever the session made of that,
    // it was the cancel.
    match r {
        Err(e) if interrupt.is_fired() && e.kind != ErrorKind::Cancelled => Err(Error::cancelled()),
        r => r,
    }
}

/// Login and SELECT INBOX, then LOGOUT.
fn imap_check(ctx: &Context, req: &TestRequest, token: &Secret, cancel: &Cancel) -> Result<Passed> {
    let ep = mailbox_endpoint(ctx, req, Protocol::Imap)?;
    let opts = imap::Options {
        max_message_bytes: ctx.config().max_message_bytes,
        ..imap::Options::default()
    };
    let (host, port) = (ep.host.clone(), ep.port);
    let account = req.account.as_str();
    let exists = with_interrupt(ctx, cancel, |i| {
        let s = imap::Session::login(&ep, i, opts, account, token, "INBOX")?;
        let exists = s.selected().map(|sel| sel.exists).unwrap_or(0);
        // The check is done; a failing LOGOUT changes nothing about it.
        let _ = s.logout();
        Ok(exists)
    })?;
    Ok(Passed {
        message: Text::new(
            format!("signed in to {host}:{port} as {account}; INBOX has {exists} messages"),
            format!(
                "bei {host}:{port} als {account} angemeldet; der Posteingang hat {exists} Nachrichten"
            ),
        ),
        server_reply: None,
        expires_at: None,
    })
}

/// Login and STAT, then QUIT (no DELE: nothing changes).
fn pop3_check(ctx: &Context, req: &TestRequest, token: &Secret, cancel: &Cancel) -> Result<Passed> {
    let ep = mailbox_endpoint(ctx, req, Protocol::Pop3)?;
    let opts = pop3::Options {
        max_message_bytes: ctx.config().max_message_bytes,
        ..pop3::Options::default()
    };
    let (host, port) = (ep.host.clone(), ep.port);
    let account = req.account.as_str();
    let reply = with_interrupt(ctx, cancel, |i| {
        let mut s = pop3::Session::connect(&ep, i, opts)?;
        s.authenticate(account, token, ep.port)?;
        let reply = s
            .command("STAT", "STAT")
            .map_err(|e| stat_error(e, account))?;
        let _ = s.quit();
        Ok(reply)
    })?;
    let mut words = reply.split_ascii_whitespace();
    let count = words.next().unwrap_or("?").to_string();
    let size = words.next().unwrap_or("?").to_string();
    Ok(Passed {
        message: Text::new(
            format!(
                "signed in to {host}:{port} as {account}; the mailbox has {count} messages ({size} bytes)"
            ),
            format!(
                "bei {host}:{port} als {account} angemeldet; das Postfach hat {count} Nachrichten ({size} Bytes)"
            ),
        ),
        server_reply: Some(crate::error::sanitize_reply(&format!("+OK {reply}"))),
        expires_at: None,
    })
}

/// Exchange answers the first command after a login it cannot serve with
/// "User is authenticated but not connected".
fn stat_error(e: Error, account: &str) -> Error {
    let not_connected = e
        .server_reply
        .as_deref()
        .is_some_and(|r| r.to_ascii_lowercase().contains("not connected"));
    if !not_connected {
        return e;
    }
    let reply = e.server_reply.clone().unwrap_or_default();
    Error::new(
        ErrorKind::MailboxAccessDenied,
        Text::new(
            format!("the POP3 server accepted the login but refuses the mailbox {account}"),
            format!(
                "der POP3-Server hat die Anmeldung angenommen, verweigert aber das Postfach {account}"
            ),
        ),
    )
    .with_hint(sasl::mailbox_access_hint(account))
    .with_server_reply(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::Config {
        crate::config::parse(r#"{"client_id":"00000000-0000-0000-0000-0000000000a1"}"#)
            .unwrap()
            .config
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let c = config();
        let r = TestRequest::parse(r#"{"account":"a@b.c"}"#, &c).unwrap();
        assert_eq!(r.protocols, Protocols::ALL);
        assert_eq!(r.step_timeout, DEFAULT_STEP_TIMEOUT);
        let r = TestRequest::parse(
            r#"{"account":"a@b.c","protocols":["imap"],"timeout_ms":500}"#,
            &c,
        )
        .unwrap();
        assert_eq!(r.protocols, Protocols::of(Protocol::Imap));
        assert_eq!(r.step_timeout, Duration::from_millis(500));
        for (bad, kind, key) in [
            (
                r#"{"account":"a@b.c","protocol":["imap"]}"#,
                ErrorKind::InvalidConfig,
                "protocol",
            ),
            (
                r#"{"protocols":["imap"]}"#,
                ErrorKind::InvalidConfig,
                "account",
            ),
            (
                r#"{"account":"a@b.c","protocols":["ftp"]}"#,
                ErrorKind::InvalidConfig,
                "ftp",
            ),
            (
                r#"{"account":"a@b.c","protocols":[]}"#,
                ErrorKind::InvalidConfig,
                "protocols",
            ),
            (
                r#"{"account":"a@b.c","timeout_ms":0}"#,
                ErrorKind::InvalidConfig,
                "timeout_ms",
            ),
            (
                r#"{"account":"a@b.c","account":"x@y.z"}"#,
                ErrorKind::InvalidConfig,
                "account",
            ),
            (
                r#"{"account":"a@b.c\r\nX: y"}"#,
                ErrorKind::InvalidArgument,
                "account",
            ),
            (r#"{"account":" "}"#, ErrorKind::InvalidConfig, "account"),
            (r#"["a"]"#, ErrorKind::InvalidConfig, "object"),
            (r#"{"account":"#, ErrorKind::InvalidConfig, "JSON"),
        ] {
            let e = TestRequest::parse(bad, &c).unwrap_err();
            assert_eq!(e.kind, kind, "{bad}");
            assert!(e.message.en.contains(key), "{bad}: {}", e.message.en);
            assert!(!e.message.de.is_empty());
        }
    }

    #[test]
    fn a_stat_refusal_of_an_unconnected_user_is_access_denied() {
        let e = Error::plain(ErrorKind::Protocol, "refused STAT")
            .with_server_reply("-ERR User is authenticated but not connected.");
        let m = stat_error(e, "a@b.c");
        assert_eq!(m.kind, ErrorKind::MailboxAccessDenied);
        assert!(m.hint.as_ref().unwrap().en.contains("FullAccess"));
        let other = Error::plain(ErrorKind::Protocol, "x").with_server_reply("-ERR nope");
        assert_eq!(stat_error(other, "a@b.c").kind, ErrorKind::Protocol);
    }

    #[test]
    fn cancel_wakes_a_waiter_and_ends_cancelled() {
        let op = Arc::new(AccountTestOp::new());
        assert!(op.wait(Duration::ZERO).is_none());
        op.push(Step {
            kind: StepKind::Token,
            outcome: Err(Error::plain(ErrorKind::ConsentRequired, "x")),
            ms: 1,
        });
        assert_eq!(op.steps().len(), 1);
        op.cancel();
        op.finish();
        assert_eq!(op.state(), TestState::Cancelled);
        assert_eq!(
            op.wait(Duration::from_secs(5)).unwrap().unwrap_err().kind,
            ErrorKind::Cancelled
        );
        let broken = AccountTestOp::new();
        broken.fail(Error::internal("x"));
        assert_eq!(broken.state(), TestState::Failed);
        assert_eq!(
            broken.wait(Duration::ZERO).unwrap().unwrap_err().kind,
            ErrorKind::Internal
        );
        // A fresh interrupt after the cancel is fired at once.
        assert!(op.cancel.interrupt().is_fired());
    }
}
