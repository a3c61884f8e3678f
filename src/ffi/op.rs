//! Consent as a long operation object: begin, then wait (or poll from a UI
//! timer), read its info (the URL to open, the device code), its result, or
//! cancel it.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use super::context::{context_of, mailoauth_context};
use super::handles::Registry;
use super::result::{MAILOAUTH_OK, MAILOAUTH_PENDING};
use super::{error, memory, strings};
use crate::consent::{self, ConsentOp, ConsentOutcome};
use crate::context::Context;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;

/// A running or finished consent. Opaque; create it with
/// mailoauth_consent_begin() and release it with mailoauth_op_free().
pub struct mailoauth_op {
    _private: [u8; 0],
}

pub(crate) struct OpHandle {
    /// Keeps the context alive: handles may be freed in any order.
    ctx: Arc<Context>,
    op: Arc<ConsentOp>,
}

static OPS: Registry<OpHandle> = Registry::new();

impl OpHandle {
    /// Waits up to `timeout`; a successful flow's grant is stored here, on
    /// the waiting host thread, exactly once.
    fn settle(&self, timeout: Duration) -> Option<Result<ConsentOutcome>> {
        self.ctx.consent_settle(&self.op, timeout)
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
        let handle = OPS.insert(Arc::new(OpHandle { ctx, op }));
        // SAFETY: out was checked non-NULL; written only on success.
        unsafe { *out = handle };
        MAILOAUTH_OK
    }
}

/// Waits for a consent to finish. With `timeout_ms` 0 it only polls (for a
/// UI timer); negative waits as long as the consent may take.
/// @param op         the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param timeout_ms how long to wait.
/// @return MAILOAUTH_OK (done: the grant is stored), MAILOAUTH_PENDING (still
///         running; sets no last error), or the consent's failure
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
            Duration::from_secs(u64::from(consent::MAX_TIMEOUT_S) + 60)
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

/// Describes the operation as JSON: `{"state": "starting" |
/// "waiting_for_user" | "exchanging" | "done" | "failed" | "cancelled",
/// "authorize_url": "…", "user_code": "…", "verification_uri": "…",
/// "message": "…", "expires_at": …}` (keys only when known).
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
        try_ffi!(unsafe { memory::put_string(out_json, h.op.info().to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// The result of a finished consent as JSON: `{"account": "…", "username":
/// "…", "tenant_id": "…", "scopes": ["…"], "expires_at": …}` — never a secret.
/// @param op       the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param out_json receives the JSON on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK; MAILOAUTH_INVALID_STATE while it is still running;
///         the consent's failure (copied into the last error) when it failed.
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
        let outcome = match h.settle(Duration::ZERO) {
            None => {
                return error::set(
                    &Error::new(
                        ErrorKind::InvalidState,
                        Text::new(
                            "the consent is still running: wait for it first (mailoauth_op_wait)",
                            "die Zustimmung läuft noch: zuerst darauf warten (mailoauth_op_wait)",
                        ),
                    ),
                    lang,
                );
            }
            Some(r) => try_ffi!(r, lang),
        };
        let mut result = outcome.result_json();
        if let Some(obj) = result.as_object_mut() {
            obj.insert("protocols".into(), outcome.protocols.names().into());
        }
        // SAFETY: out_json was checked non-NULL above.
        try_ffi!(unsafe { memory::put_string(out_json, result.to_string()) }, lang);
        MAILOAUTH_OK
    }
}

/// Cancels a running consent from any thread; a waiting mailoauth_op_wait
/// returns MAILOAUTH_CANCELLED promptly and the loopback listener closes.
/// Cancelling a finished consent changes nothing.
/// @param op the operation; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_op_cancel(op: *mut mailoauth_op) -> i32 {
    ffi_boundary! {
        let h = try_ffi!(OPS.get(op, "op"));
        h.op.cancel();
        MAILOAUTH_OK
    }
}

/// Releases an operation, cancelling it if it still runs. NULL, or an
/// operation already freed, is a no-op. Any thread; never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_op_free(op: *mut mailoauth_op) {
    ffi_boundary_keep_error! {
        if let Some(h) = OPS.remove(op) {
            h.op.cancel();
        }
    }
}
