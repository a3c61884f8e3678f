//! Long operations as one object: a consent or an account test. Begin one
//! (mailoauth_consent_begin, mailoauth_account_test_begin), then wait (or
//! poll from a UI timer), read its info (the URL to open, the device code,
//! the steps done so far), its result, or cancel it.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::context::{context_of, mailoauth_context};
use super::handles::Registry;
use super::result::{MAILOAUTH_OK, MAILOAUTH_PENDING};
use super::{error, memory, strings};
use crate::account_test::AccountTestOp;
use crate::consent::{self, ConsentOp};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// A running or finished operation (a consent or an account test). Opaque;
/// create it with mailoauth_consent_begin() or
/// mailoauth_account_test_begin() and release it with mailoauth_op_free().
pub struct mailoauth_op {
    _private: [u8; 0],
}

/// What an operation handle stands for.
enum Kind {
    Consent(Arc<ConsentOp>),
    AccountTest(Arc<AccountTestOp>),
}

pub(crate) struct OpHandle {
    /// Keeps the context alive: handles may be freed in any order.
    ctx: Arc<Context>,
    kind: Kind,
}

static OPS: Registry<OpHandle> = Registry::new();

/// Registers a started account test and returns its handle.
pub(super) fn register_account_test(
    ctx: Arc<Context>,
    op: Arc<AccountTestOp>,
) -> *mut mailoauth_op {
    OPS.insert(Arc::new(OpHandle {
        ctx,
        kind: Kind::AccountTest(op),
    }))
}

impl OpHandle {
    /// Waits up to `timeout`: None while it runs, else its result JSON. A
    /// successful consent's grant is stored here, on the waiting host
    /// thread, exactly once.
    fn settle(&self, timeout: Duration) -> Option<Result<serde_json::Value>> {
        match &self.kind {
            Kind::Consent(op) => self.ctx.consent_settle(op, timeout).map(|r| {
                r.map(|outcome| {
                    let mut result = outcome.result_json();
                    if let Some(obj) = result.as_object_mut() {
                        obj.insert("protocols".into(), outcome.protocols.names().into());
                    }
                    result
                })
            }),
            Kind::AccountTest(op) => op.wait(timeout).map(|r| {
                r.map(|steps| super::account_test::result_json(&steps, self.ctx.language()))
            }),
        }
    }

    fn info(&self) -> serde_json::Value {
        match &self.kind {
            Kind::Consent(op) => op.info(),
            Kind::AccountTest(op) => super::account_test::info_json(op, self.ctx.language()),
        }
    }

    fn cancel(&self) {
        match &self.kind {
            Kind::Consent(op) => op.cancel(),
            Kind::AccountTest(op) => op.cancel(),
        }
    }

    /// The longest wait a negative `timeout_ms` stands for.
    fn forever(&self) -> Duration {
        match &self.kind {
            Kind::Consent(_) => Duration::from_secs(u64::from(consent::MAX_TIMEOUT_S) + 60),
            Kind::AccountTest(_) => Duration::MAX,
        }
    }
}

/// Starts a consent: `{"account": "user@contoso.com", "protocols":
/// ["smtp","imap","pop3"], "flow": "browser" | "device" | "app", "prompt":
/// "select_account", "timeout_s": 300, "accept_other_account": false}`. One
/// consent covers every requested protocol (all three by default).
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request; NULL or bad UTF-8 → MAILOAUTH_INVALID_ARGUMENT,
///                     malformed or an unknown key → MAILOAUTH_INVALID_CONFIG.
/// @param out          receives the operation on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_CONFIG,
///         MAILOAUTH_INVALID_STATE (browser flow in a Windows service, or
///         the configured redirect.port is in use).
/// Returns immediately; the browser is opened (unless `browser` is `none`)
/// and the flow runs in the background.
/// The operation must be released with mailoauth_op_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_consent_begin(
    ctx: *mut mailoauth_context,
    request_json: *const c_char,
    out: *mut *mut mailoauth_op,
) -> i32 {
    ffi_boundary! {
        let ctx = try_ffi!(context_of(ctx));
        let lang = ctx.language();
        // SAFETY: a NUL-terminated string per the contract (NULL checked).
        let json = try_ffi!(unsafe { strings::required(request_json, "request_json") }, lang);
        if out.is_null() {
            return error::set(&strings::null_argument("out"), lang);
        }
        let op = try_ffi!(ctx.consent_begin(json), lang);
        let handle = OPS.insert(Arc::new(OpHandle {
            ctx,
            kind: Kind::Consent(op),
        }));
        // SAFETY: out was checked non-NULL; written only on success.
        unsafe { *out = handle };
        MAILOAUTH_OK
    }
}

/// Waits for an operation (a consent or an account test) to finish. With
/// `timeout_ms` 0 it only polls (for a UI timer); negative waits as long as
/// the operation may take.
/// @param op         the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param timeout_ms how long to wait.
/// @return MAILOAUTH_OK (done: a consent's grant is stored; an account
///         test's steps are in its result, failed ones too), MAILOAUTH_PENDING
///         (still running; sets no last error), or the operation's failure
///         (MAILOAUTH_DECLINED, MAILOAUTH_TIMEOUT, MAILOAUTH_CANCELLED,
///         MAILOAUTH_ACCOUNT_MISMATCH, MAILOAUTH_PROVIDER_ERROR, …), whose
///         error record is copied into this thread's last error.
/// Blocks up to `timeout_ms`. The grant is stored on the first thread that
/// sees the consent succeed (host store callbacks run there).
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_op_wait(op: *mut mailoauth_op, timeout_ms: i32) -> i32 {
    // PENDING sets nothing: the last error stays as it was; OK clears it and
    // a failure replaces it.
    ffi_boundary_keep_error! {
        let h = try_ffi!(OPS.get(op, "op"));
        let lang = h.ctx.language();
        let timeout = if timeout_ms < 0 {
            h.forever()
        } else {
            Duration::from_millis(timeout_ms as u64)
        };
        match h.settle(timeout) {
            None => MAILOAUTH_PENDING,
            Some(Ok(_)) => {
                error::clear();
                MAILOAUTH_OK
            }
            Some(Err(e)) => error::set(&e, lang),
        }
    }
}

/// Describes the operation as JSON. A consent: `{"state": "starting" |
/// "waiting_for_user" | "exchanging" | "done" | "failed" | "cancelled",
/// "authorize_url": "…", "user_code": "…", "verification_uri": "…",
/// "message": "…", "expires_at": …}` (keys only when known). An account
/// test: `{"state": "running" | "done" | "cancelled" | "failed", "steps":
/// [the steps finished so far, as in its result]}`.
/// @param op       the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_op_info(
    op: *mut mailoauth_op,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(OPS.get(op, "op"));
        let lang = h.ctx.language();
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        // SAFETY: out_json was checked non-NULL above.
        try_ffi!(unsafe { memory::put_string(out_json, h.info().to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// The result of a finished operation as JSON. A consent: `{"account": "…",
/// "username": "…", "tenant_id": "…", "scopes": ["…"], "protocols": ["…"],
/// "expires_at": …}`. An account test: `{"steps": [{"step": "token" |
/// "smtp" | "imap" | "pop3", "code": 0, "name": "OK", "message": "…",
/// "hint": "…", "server_reply": "…", "ms": 120}]}`. Never a secret.
/// @param op       the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK; MAILOAUTH_INVALID_STATE while it is still running;
///         the operation's failure (copied into the last error) when it
///         failed or was cancelled.
/// Returns immediately (storing the grant first if no wait did yet).
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_op_result(
    op: *mut mailoauth_op,
    out_json: *mut *mut c_char,
) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(OPS.get(op, "op"));
        let lang = h.ctx.language();
        try_ffi!(strings::require_out(out_json, "out_json"), lang);
        let result = match h.settle(Duration::ZERO) {
            None => {
                return error::set(
                    &Error::new(
                        ErrorKind::InvalidState,
                        Text::new(
                            "the operation is still running: wait for it first (mailoauth_op_wait)",
                            "der Vorgang läuft noch: zuerst darauf warten (mailoauth_op_wait)",
                        ),
                    ),
                    lang,
                );
            }
            Some(r) => try_ffi!(r, lang),
        };
        // SAFETY: out_json was checked non-NULL above.
        try_ffi!(unsafe { memory::put_string(out_json, result.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Cancels a running operation from any thread; a waiting mailoauth_op_wait
/// returns MAILOAUTH_CANCELLED promptly (a consent's loopback listener
/// closes; an account test's running step ends and the rest are skipped).
/// Cancelling a finished operation changes nothing.
/// @param op the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_op_cancel(op: *mut mailoauth_op) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(OPS.get(op, "op"));
        h.cancel();
        MAILOAUTH_OK
    }
}

/// Releases an operation, cancelling it if it still runs. NULL, or an
/// operation already freed, is a no-op. Any thread; never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_op_free(op: *mut mailoauth_op) {
    ffi_boundary_keep_error! {
        if let Some(h) = OPS.remove(op) {
            h.cancel();
        }
    }
}
