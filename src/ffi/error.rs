//! The calling thread's last error: set by every failing export, cleared by
//! every other export on entry, read with mailoauth_last_error() and
//! mailoauth_last_error_message(). Thread-local, because a context is shared
//! by many threads and a per-context record would race.

use std::cell::RefCell;

use serde_json::{Map, Value};

use super::result::{MAILOAUTH_INTERNAL, MAILOAUTH_OK, code_of, name_of};
use crate::error::Error;
use crate::i18n::Language;

/// A failure rendered in one language, ready to hand to the host.
#[derive(Debug, Clone, Default)]
pub(crate) struct Record {
    pub code: i32,
    pub message: String,
    pub json: String,
}

thread_local! {
    static LAST: RefCell<Option<Record>> = const { RefCell::new(None) };
}

pub(crate) fn clear() {
    LAST.with(|l| *l.borrow_mut() = None);
}

/// Renders an error in `lang`, stores it as this thread's last error and
/// returns its code.
pub(crate) fn set(err: &Error, lang: Language) -> i32 {
    let record = render(err, lang);
    let code = record.code;
    LAST.with(|l| *l.borrow_mut() = Some(record));
    code
}

/// Stores an already rendered record (an operation's, copied to the thread
/// that waits for it).
#[allow(dead_code)]
pub(crate) fn set_record(record: Record) -> i32 {
    let code = record.code;
    LAST.with(|l| *l.borrow_mut() = Some(record));
    code
}

pub(crate) fn render(err: &Error, lang: Language) -> Record {
    let code = code_of(err.kind);
    let message = err.message_in(lang).to_string();
    let mut m = Map::new();
    m.insert("code".into(), code.into());
    m.insert("name".into(), name_str(code).into());
    m.insert("message".into(), message.clone().into());
    if let Some(h) = &err.hint {
        m.insert("hint".into(), h.get(lang).into());
    }
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), v.clone().into());
        }
    };
    opt("provider_error", &err.provider_error);
    opt("provider_code", &err.provider_code);
    opt("server_reply", &err.server_reply);
    opt("correlation_id", &err.correlation_id);
    if let Some(r) = err.retry_after_s {
        m.insert("retry_after_s".into(), r.into());
    }
    if !err.rejected.is_empty() {
        m.insert("rejected".into(), err.rejected.clone().into());
    }
    Record {
        code,
        message,
        json: Value::Object(m).to_string(),
    }
}

/// Records a caught panic. Its text is our own code's (never a secret), kept
/// for the bug report.
pub(crate) fn set_panic(payload: &(dyn std::any::Any + Send)) -> i32 {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    let err = Error::internal(format!("a bug in mailoauth was caught: {what}"));
    crate::log::error!("caught a panic at the C boundary: {what}");
    set(&err, Language::En);
    MAILOAUTH_INTERNAL
}

/// The last error as JSON; `{"code":0,"name":"OK"}` when there is none.
pub(crate) fn last_json() -> String {
    LAST.with(|l| match &*l.borrow() {
        Some(r) => r.json.clone(),
        None => format!(r#"{{"code":{MAILOAUTH_OK},"name":"OK"}}"#),
    })
}

/// The last error's message; empty when there is none.
pub(crate) fn last_message() -> String {
    LAST.with(|l| {
        l.borrow()
            .as_ref()
            .map(|r| r.message.clone())
            .unwrap_or_default()
    })
}

fn name_str(code: i32) -> &'static str {
    name_of(code).to_str().unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::i18n::Text;

    #[test]
    fn renders_only_known_keys_in_the_chosen_language() {
        let mut e = Error::new(ErrorKind::ConsentRequired, Text::new("sign in", "anmelden"))
            .with_hint(Text::new("hint", "Hinweis"));
        e.provider_code = Some("AADSTS700082".into());
        e.retry_after_s = Some(30);
        let r = render(&e, Language::De);
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["code"], 200);
        assert_eq!(v["name"], "CONSENT_REQUIRED");
        assert_eq!(v["message"], "anmelden");
        assert_eq!(v["hint"], "Hinweis");
        assert_eq!(v["provider_code"], "AADSTS700082");
        assert_eq!(v["retry_after_s"], 30);
        assert!(v.get("server_reply").is_none());
    }

    #[test]
    fn clear_and_thread_locality() {
        set(&Error::plain(ErrorKind::Busy, "x"), Language::En);
        assert!(last_json().contains("BUSY"));
        std::thread::spawn(|| assert_eq!(last_json(), r#"{"code":0,"name":"OK"}"#))
            .join()
            .unwrap();
        clear();
        assert_eq!(last_message(), "");
    }
}
