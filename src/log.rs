//! The library's log: one process-wide sink (the host's logger), levels 1
//! (error) to 5 (trace), every message passed through [`redact`].
//!
//! The contract says callbacks run only on a thread that is inside a call into
//! the library. Messages from such threads go to the sink at once; messages
//! from the runtime's worker threads wait in a small bounded queue that the
//! next host call drains. Replacing or removing the sink takes the write side
//! of a lock that every delivery holds for reading, so it returns only when no
//! call of the old sink is still running.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use once_cell::sync::Lazy;

/// Severity, as the numbers of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn from_i32(v: i32) -> Option<Self> {
        Some(match v {
            1 => Self::Error,
            2 => Self::Warn,
            3 => Self::Info,
            4 => Self::Debug,
            5 => Self::Trace,
            _ => return None,
        })
    }
}

/// Where messages go: the C layer wraps the host's function pointer in one.
pub type Sink = Arc<dyn Fn(Level, &str) + Send + Sync>;

struct Logger {
    max_level: Level,
    sink: Sink,
}

static LOGGER: Lazy<RwLock<Option<Logger>>> = Lazy::new(|| RwLock::new(None));
/// The highest level anyone listens to; 0 = no logger (the fast path).
static MAX_LEVEL: AtomicI32 = AtomicI32::new(0);
/// Messages from threads that are not inside a host call.
static QUEUE: Lazy<Mutex<VecDeque<(Level, String)>>> = Lazy::new(|| Mutex::new(VecDeque::new()));
static DROPPED: AtomicU64 = AtomicU64::new(0);
const QUEUE_LIMIT: usize = 1024;

thread_local! {
    /// How deep this thread is inside calls from the host.
    static HOST_CALL_DEPTH: Cell<u32> = const { Cell::new(0) };
    /// Set while this thread runs the host's logger.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

/// Installing a logger from inside the logger itself would deadlock.
#[derive(Debug, PartialEq, Eq)]
pub struct ReentrantSetLogger;

/// Installs (or with `None` removes) the process-wide sink. Returns once no
/// call of the previous sink is running any more.
pub fn set_sink(max_level: Option<Level>, sink: Option<Sink>) -> Result<(), ReentrantSetLogger> {
    if IN_SINK.with(Cell::get) {
        return Err(ReentrantSetLogger);
    }
    let mut guard = LOGGER.write().unwrap_or_else(PoisonError::into_inner);
    match (max_level, sink) {
        (Some(max_level), Some(sink)) => {
            *guard = Some(Logger { max_level, sink });
            MAX_LEVEL.store(max_level as i32, Ordering::SeqCst);
        }
        _ => {
            *guard = None;
            MAX_LEVEL.store(0, Ordering::SeqCst);
            QUEUE.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
    Ok(())
}

/// True when a message of this level would reach someone.
pub fn enabled(level: Level) -> bool {
    (level as i32) <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Logs a message (already free of secrets by construction; [`redact`] is the
/// safety net).
pub fn log(level: Level, message: &str) {
    if !enabled(level) || IN_SINK.with(Cell::get) {
        return;
    }
    let message = redact(message);
    if HOST_CALL_DEPTH.with(Cell::get) > 0 {
        deliver(level, &message);
    } else {
        let mut q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() >= QUEUE_LIMIT {
            q.pop_front();
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        q.push_back((level, message));
    }
}

fn deliver(level: Level, message: &str) {
    let guard = LOGGER.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(logger) = guard.as_ref().filter(|l| level <= l.max_level) {
        {
            IN_SINK.with(|f| f.set(true));
            // A panic in a Rust sink must not leave the flag set; a C sink
            // cannot unwind into us.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (logger.sink)(level, message)
            }));
            IN_SINK.with(|f| f.set(false));
        }
    }
}

fn drain_queue() {
    if MAX_LEVEL.load(Ordering::Relaxed) == 0 {
        return;
    }
    let pending: Vec<(Level, String)> = {
        let mut q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
        q.drain(..).collect()
    };
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        deliver(
            Level::Warn,
            &format!("{dropped} log messages from background work were dropped (queue full)"),
        );
    }
    for (level, message) in pending {
        deliver(level, &message);
    }
}

/// Marks the current thread as inside a host call while it lives; the
/// outermost guard delivers queued background messages on entry and exit.
pub struct HostCall(());

impl HostCall {
    pub fn enter() -> Self {
        let depth = HOST_CALL_DEPTH.with(|d| {
            let v = d.get() + 1;
            d.set(v);
            v
        });
        if depth == 1 {
            drain_queue();
        }
        HostCall(())
    }
}

impl Drop for HostCall {
    fn drop(&mut self) {
        let depth = HOST_CALL_DEPTH.with(|d| {
            let v = d.get().saturating_sub(1);
            d.set(v);
            v
        });
        if depth == 0 {
            drain_queue();
        }
    }
}

macro_rules! log_at {
    ($level:expr, $($arg:tt)*) => {
        if $crate::log::enabled($level) {
            $crate::log::log($level, &format!($($arg)*));
        }
    };
}
pub(crate) use log_at;

macro_rules! error { ($($arg:tt)*) => { $crate::log::log_at!($crate::log::Level::Error, $($arg)*) }; }
macro_rules! warning { ($($arg:tt)*) => { $crate::log::log_at!($crate::log::Level::Warn, $($arg)*) }; }
macro_rules! info { ($($arg:tt)*) => { $crate::log::log_at!($crate::log::Level::Info, $($arg)*) }; }
macro_rules! debug { ($($arg:tt)*) => { $crate::log::log_at!($crate::log::Level::Debug, $($arg)*) }; }
#[allow(unused_macros)]
macro_rules! trace { ($($arg:tt)*) => { $crate::log::log_at!($crate::log::Level::Trace, $($arg)*) }; }
#[allow(unused_imports)]
pub(crate) use {debug, error, info, trace, warning};

/// Keys whose values are always secret when they show up as `key=value` or
/// `"key":"value"` in a message.
const SECRET_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "code",
    "code_verifier",
    "device_code",
    "password",
    "auth",
    "token",
    "assertion",
];

/// Keys whose values are secret however short they are.
const ALWAYS_SECRET: &[&str] = &["password", "client_secret"];

/// The safety net under "never format a secret": masks values of secret keys,
/// `Bearer …` credentials, and long runs that look like tokens or base64
/// (SASL lines) with `[redacted]`.
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let bytes = message.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A run of token-alphabet characters.
        let start = i;
        while i < bytes.len() && is_token_byte(bytes[i]) {
            i += 1;
        }
        if i > start {
            let run = &message[start..i];
            if looks_like_token(run) {
                out.push_str("[redacted]");
            } else {
                out.push_str(run);
            }
            // key=value / key: value / "key":"value" / Bearer value
            if let Some(skip) = secret_value_after(run, &message[i..]) {
                out.push_str(&message[i..i + skip.prefix]);
                out.push_str("[redacted]");
                i += skip.prefix + skip.value;
            }
            continue;
        }
        // Not a token byte: copy one whole character.
        let ch_len = message[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&message[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// Characters of tokens, codes and base64 (without `=`, which separates a
/// key from its value; padding is harmless on its own).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'/')
}

/// Long mixed-case-and-digit runs: access tokens, refresh tokens, codes,
/// base64 SASL lines. GUIDs, host names and ordinary words stay.
fn looks_like_token(run: &str) -> bool {
    if run.len() < 40 {
        return false;
    }
    // An absolute path (/tmp/…/mailoauth.key): judged by its segments, so a
    // long path is not mistaken for a token while a token (which would need
    // a slash every 40 characters to pass) still is.
    if run.starts_with('/') && run.split('/').all(|seg| seg.len() < 40) {
        return false;
    }
    let upper = run.bytes().any(|b| b.is_ascii_uppercase());
    let lower = run.bytes().any(|b| b.is_ascii_lowercase());
    let digit = run.bytes().any(|b| b.is_ascii_digit());
    upper && lower && digit
}

struct ValueSpan {
    prefix: usize,
    value: usize,
}

fn secret_value_after(word: &str, rest: &str) -> Option<ValueSpan> {
    let key = word.rsplit(['&', '?', '.', '/']).next().unwrap_or(word);
    let key_is_secret = SECRET_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
        || word.eq_ignore_ascii_case("bearer");
    if !key_is_secret {
        return None;
    }
    let rb = rest.as_bytes();
    let mut p = 0;
    if word.eq_ignore_ascii_case("bearer") {
        while p < rb.len() && rb[p] == b' ' {
            p += 1;
        }
        if p == 0 {
            return None;
        }
    } else {
        if p < rb.len() && rb[p] == b'"' {
            p += 1;
        }
        while p < rb.len() && rb[p] == b' ' {
            p += 1;
        }
        if p < rb.len() && (rb[p] == b'=' || rb[p] == b':') {
            p += 1;
        } else {
            return None;
        }
        while p < rb.len() && (rb[p] == b' ' || rb[p] == b'"') {
            p += 1;
        }
    }
    let run_end = |from: usize| {
        let mut v = from;
        while v < rb.len() && is_token_byte(rb[v]) {
            v += 1;
        }
        v
    };
    let mut v = run_end(p);
    if v == p {
        return None;
    }
    let is_bearer = word.eq_ignore_ascii_case("bearer");
    if !is_bearer && rest[p..v].eq_ignore_ascii_case("bearer") {
        // auth=Bearer <token>: the credential is the word after "Bearer".
        let mut q = v;
        while q < rb.len() && rb[q] == b' ' {
            q += 1;
        }
        v = run_end(q);
    } else if !is_bearer && !ALWAYS_SECRET.iter().any(|k| key.eq_ignore_ascii_case(k)) && v - p < 8
    {
        // "code: 535" is a status, not a credential.
        return None;
    }
    Some(ValueSpan {
        prefix: p,
        value: v - p,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_keys_bearer_and_long_tokens() {
        let tok = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA1234567890abcdefXYZ";
        assert_eq!(redact(&format!("got {tok} back")), "got [redacted] back");
        assert_eq!(
            redact("POST refresh_token=0.AXoAbc123&client_id=x"),
            "POST refresh_token=[redacted]&client_id=x"
        );
        assert_eq!(
            redact("Authorization: Bearer xyz"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(
            redact(r#"{"code": "M.C507_BAY.2.U.abc"}"#),
            r#"{"code": "[redacted]"}"#
        );
        assert_eq!(redact("auth=Bearer abc"), "auth=[redacted]");
        assert_eq!(redact("password=pw"), "password=[redacted]");
        assert_eq!(redact("error code: 535"), "error code: 535");
    }

    /// The process-wide logger is shared by every test in this binary.
    static LOGGER_TESTS: Mutex<()> = Mutex::new(());

    #[test]
    fn replacing_the_sink_waits_for_running_calls_of_the_old_one() {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let _serial = LOGGER_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let replaced = Arc::new(AtomicBool::new(false));
        let late_calls = Arc::new(AtomicUsize::new(0));
        let old_calls = Arc::new(AtomicUsize::new(0));
        let (r, l, o) = (replaced.clone(), late_calls.clone(), old_calls.clone());
        let old: Sink = Arc::new(move |_, _| {
            o.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_micros(200));
            if r.load(Ordering::SeqCst) {
                l.fetch_add(1, Ordering::SeqCst);
            }
        });
        set_sink(Some(Level::Trace), Some(old)).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let _call = HostCall::enter();
                    while !stop.load(Ordering::SeqCst) {
                        log(Level::Info, "working");
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let new: Sink = Arc::new(|_, _| {});
        set_sink(Some(Level::Trace), Some(new)).unwrap();
        replaced.store(true, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(20));
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().unwrap();
        }
        set_sink(None, None).unwrap();
        assert!(old_calls.load(Ordering::SeqCst) > 0);
        assert_eq!(late_calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn background_messages_wait_for_a_host_call() {
        let _serial = LOGGER_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = Arc::new(Mutex::new(Vec::<(std::thread::ThreadId, String)>::new()));
        let s2 = seen.clone();
        let sink: Sink = Arc::new(move |_, m| {
            s2.lock()
                .unwrap()
                .push((std::thread::current().id(), m.to_string()));
        });
        set_sink(Some(Level::Debug), Some(sink)).unwrap();
        std::thread::spawn(|| log(Level::Info, "from a worker"))
            .join()
            .unwrap();
        assert!(
            !seen
                .lock()
                .unwrap()
                .iter()
                .any(|(_, m)| m == "from a worker"),
            "delivered outside a host call"
        );
        {
            let _call = HostCall::enter();
        }
        // Other tests may log at the same time: look only at our message.
        let got: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m == "from a worker")
            .cloned()
            .collect();
        set_sink(None, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, std::thread::current().id());
        assert_eq!(got[0].1, "from a worker");
        // Above the level: never delivered.
        assert!(!enabled(Level::Trace));
    }

    #[test]
    fn setting_the_logger_from_inside_it_is_refused() {
        let _serial = LOGGER_TESTS.lock().unwrap_or_else(PoisonError::into_inner);
        let result = Arc::new(Mutex::new(None));
        let r2 = result.clone();
        let sink: Sink = Arc::new(move |_, _| {
            *r2.lock().unwrap() = Some(set_sink(None, None));
        });
        set_sink(Some(Level::Info), Some(sink)).unwrap();
        {
            let _call = HostCall::enter();
            log(Level::Info, "trigger");
        }
        set_sink(None, None).unwrap();
        assert_eq!(*result.lock().unwrap(), Some(Err(ReentrantSetLogger)));
    }

    #[test]
    fn keeps_paths() {
        let s = "key file /tmp/mailoauth-stack.Kpp7Mw/demo-cache/mailoauth.key in use";
        assert_eq!(redact(s), s);
    }

    #[test]
    fn keeps_ordinary_text() {
        let s = "context created: provider=microsoft tenant=organizations client 00000000-0000-0000-0000-0000000000a1 host smtp.office365.com:587 — Grüße";
        assert_eq!(redact(s), s);
    }
}
