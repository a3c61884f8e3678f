//! Opening mailboxes of the ABI against the stack: the configuration, a
//! minted token in a cache of the test's own, the open request.

use std::path::Path;
use std::sync::Arc;

use mailoauth::Context;
use mailoauth::cache::GrantStore;
use serde_json::{Value, json};

use super::Stack;

/// The unprotected cache store in `cache` (grants, poll states).
pub fn store(cache: &Path) -> GrantStore {
    crate::support::file_store(cache)
}

pub fn config_json(stack: &Stack, cache: &Path, extra: Value) -> String {
    let host = stack.v["imap"]["host"].as_str().unwrap_or("127.0.0.2");
    let mut v = json!({
        "provider": "custom",
        "authority": stack.v["idp"]["http"],
        "allow_plaintext_loopback": true,
        "tenant": stack.v["idp"]["tenant"],
        "client_id": stack.v["idp"]["client_id"],
        "scopes": {"imap": super::IMAP_SCOPE, "pop3": super::POP_SCOPE},
        "servers": {"imap": {"host": host, "port": stack.v["imap"]["tls"], "security": "tls"},
                    "pop3": {"host": host, "port": stack.v["pop3"]["tls"], "security": "tls"}},
        "browser": "none",
        "tls": {"ca_file": stack.v["ca_file"]},
        "http": {"proxy": "none", "timeout_ms": 10000},
        "cache": {"path": cache.to_string_lossy(), "protection": "none"},
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut v, extra) {
        for (k, x) in e {
            b.insert(k, x);
        }
    }
    v.to_string()
}

/// Puts a minted token for `user` into the cache at `cache`.
pub fn seed_grant(stack: &Stack, cache: &Path, user: &str) {
    crate::support::save_grant(cache, user, stack.mint(user), 3000, None);
}

pub fn context(stack: &Stack, cache: &Path, user: &str, extra: Value) -> Arc<Context> {
    seed_grant(stack, cache, user);
    let cfg = mailoauth::config::parse(&config_json(stack, cache, extra))
        .unwrap()
        .config;
    Arc::new(Context::new(cfg).unwrap())
}

/// The open request for `user` over `proto` ("imap"/"pop3") with
/// `security` ("tls"/"starttls"); `extra` merged.
pub fn request(stack: &Stack, user: &str, proto: &str, security: &str, extra: Value) -> String {
    let host = stack.v[proto]["host"].as_str().unwrap_or("127.0.0.2");
    let port = stack.v[proto][security].as_u64().unwrap_or(0);
    let mut v = json!({
        "account": user, "protocol": proto,
        "server": {"host": host, "port": port, "security": security},
        "lock_timeout_ms": 10000,
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut v, extra) {
        for (k, x) in e {
            b.insert(k, x);
        }
    }
    v.to_string()
}
