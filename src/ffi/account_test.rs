//! The account test ("Test settings"): an operation whose result lists
//! each step (token, SMTP, IMAP, POP3) with its result code, message,
//! hint, server reply and time. The steps themselves are
//! `crate::account_test`; this file is the export and the JSON the host
//! reads through mailoauth_op_info() / mailoauth_op_result().

use std::ffi::c_char;

use serde_json::{Map, Value, json};

use super::context::{context_of, mailoauth_context};
use super::op::{mailoauth_op, register_account_test};
use super::result::{MAILOAUTH_OK, name_of};
use super::{error, strings};
use crate::account_test::{self, AccountTestOp, Step};
use crate::error::Error;
use crate::i18n::Language;

/// Starts the account test of a host's account dialog: `{"account":
/// "user@contoso.com", "protocols": ["smtp","imap","pop3"], "timeout_ms":
/// 30000}` (`protocols` defaults to all three; `timeout_ms` bounds each
/// step, default 30 s). Without sending or changing anything it gets a
/// silent token, then per protocol: SMTP EHLO + AUTH (no MAIL FROM), IMAP
/// login + SELECT INBOX, POP3 login + STAT + QUIT. A failed step does not
/// stop the others.
/// @param ctx          the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param request_json the request; NULL or bad UTF-8 → MAILOAUTH_INVALID_ARGUMENT,
///                     malformed or an unknown key → MAILOAUTH_INVALID_CONFIG.
/// @param out          receives the operation on success only; NULL → MAILOAUTH_INVALID_ARGUMENT.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_CONFIG,
///         MAILOAUTH_TOO_LARGE, MAILOAUTH_INVALID_STATE (called from a callback).
/// Returns immediately; the steps run in the background (with a host store
/// the token is fetched first, on this thread, so that the store's
/// callbacks run inside this call). Wait with mailoauth_op_wait(), read the
/// steps done so far with mailoauth_op_info() and all of them with
/// mailoauth_op_result(): `{"steps": [{"step": "token" | "smtp" | "imap" |
/// "pop3", "code": 0, "name": "OK", "message": "…", "hint": "…",
/// "server_reply": "…", "ms": 120}]}`.
/// The operation must be released with mailoauth_op_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_account_test_begin(
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
        let op = try_ffi!(account_test::begin(&ctx, json), lang);
        let handle = register_account_test(ctx, op);
        // SAFETY: out was checked non-NULL; written only on success.
        unsafe { *out = handle };
        MAILOAUTH_OK
    }
}

/// An error as the last-error record describes it (`code`, `name`,
/// `message`, `hint`, `provider_code`, `server_reply`, …) in `lang`.
pub fn error_json(err: &Error, lang: Language) -> Value {
    serde_json::from_str(&error::render(err, lang).json).unwrap_or(Value::Null)
}

/// One account as mailoauth_account_list() lists it (never a secret).
pub fn account_json(grant: &crate::cache::Grant, lang: Language) -> Value {
    super::token::describe_grant(grant, lang)
}

/// One step as the result lists it.
pub fn step_json(step: &Step, lang: Language) -> Value {
    let mut m = Map::new();
    m.insert("step".into(), step.kind.as_str().into());
    match &step.outcome {
        Ok(passed) => {
            m.insert("code".into(), MAILOAUTH_OK.into());
            m.insert(
                "name".into(),
                name_of(MAILOAUTH_OK).to_str().unwrap_or("OK").into(),
            );
            m.insert("message".into(), passed.message.get(lang).into());
            if let Some(r) = &passed.server_reply {
                m.insert("server_reply".into(), r.clone().into());
            }
            if let Some(at) = passed.expires_at {
                m.insert("expires_at".into(), at.into());
            }
        }
        Err(e) => {
            if let Value::Object(record) = error_json(e, lang) {
                m.extend(record);
            }
        }
    }
    m.insert("ms".into(), step.ms.into());
    Value::Object(m)
}

/// `{"steps": […]}`.
pub fn result_json(steps: &[Step], lang: Language) -> Value {
    json!({"steps": steps.iter().map(|s| step_json(s, lang)).collect::<Vec<_>>()})
}

/// `{"state": "running" | "done" | "cancelled" | "failed", "steps": [the
/// steps so far]}`.
pub(crate) fn info_json(op: &AccountTestOp, lang: Language) -> Value {
    let state = op.state();
    let mut v = result_json(&op.steps(), lang);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("state".into(), state.as_str().into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account_test::{Passed, StepKind};
    use crate::error::ErrorKind;
    use crate::i18n::Text;

    #[test]
    fn steps_render_code_name_message_hint_and_time() {
        let ok = Step {
            kind: StepKind::Pop3,
            outcome: Ok(Passed {
                message: Text::new("fine", "gut"),
                server_reply: Some("+OK 2 320".into()),
                expires_at: None,
            }),
            ms: 12,
        };
        let bad = Step {
            kind: StepKind::Smtp,
            outcome: Err(
                Error::new(ErrorKind::AuthRejected, Text::new("refused", "abgelehnt"))
                    .with_hint(Text::new("enable SMTP AUTH", "SMTP AUTH einschalten"))
                    .with_server_reply("535 5.7.139 Authentication unsuccessful"),
            ),
            ms: 30,
        };
        let v = result_json(&[ok, bad], Language::De);
        let s = v["steps"].as_array().unwrap();
        assert_eq!(s[0]["step"], "pop3");
        assert_eq!(s[0]["code"], 0);
        assert_eq!(s[0]["name"], "OK");
        assert_eq!(s[0]["message"], "gut");
        assert_eq!(s[0]["server_reply"], "+OK 2 320");
        assert_eq!(s[0]["ms"], 12);
        assert!(s[0].get("hint").is_none());
        assert_eq!(s[1]["step"], "smtp");
        assert_eq!(s[1]["code"], 303);
        assert_eq!(s[1]["name"], "AUTH_REJECTED");
        assert_eq!(s[1]["message"], "abgelehnt");
        assert_eq!(s[1]["hint"], "SMTP AUTH einschalten");
        assert_eq!(
            s[1]["server_reply"],
            "535 5.7.139 Authentication unsuccessful"
        );
    }
}
