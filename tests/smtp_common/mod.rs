//! Helpers for the SMTP tests against the local stack (tests/stack): the
//! stack file, tokens minted by the identity imitation, configurations that
//! point the library at the stack, and reading delivered mail back from the
//! maildirs. Every test uses its own users and recipients: the stack is
//! shared by tests running in parallel.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailoauth::secret::Secret;
use serde_json::{Value, json};

pub const SMTP_SCOPE: &str = "https://outlook.office.com/SMTP.Send";
pub const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";
pub const POP_SCOPE: &str = "https://outlook.office.com/POP.AccessAsUser.All";

/// The running stack, from `$MAILOAUTH_STACK_FILE` or
/// /tmp/mailoauth-stack.json.
pub struct Stack {
    pub v: Value,
}

impl Stack {
    /// The stack, or None (with the skip notice printed) when it is not up.
    pub fn load() -> Option<Stack> {
        let path = std::env::var("MAILOAUTH_STACK_FILE")
            .unwrap_or_else(|_| "/tmp/mailoauth-stack.json".to_string());
        let v = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok());
        match v {
            Some(v) => Some(Stack { v }),
            None => {
                // Under tests/run.sh a missing stack is a failure, not a skip.
                if std::env::var("MAILOAUTH_REQUIRE_STACK").as_deref() == Ok("1") {
                    panic!("the local stack is not running ({path} missing)");
                }
                println!("skipped: the local stack is not running (tests/run.sh starts it)");
                None
            }
        }
    }

    pub fn idp_http(&self) -> String {
        self.v["idp"]["http"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn idp_port(&self) -> u16 {
        url::Url::parse(&self.idp_http())
            .ok()
            .and_then(|u| u.port())
            .unwrap_or(0)
    }

    pub fn smtp_host(&self) -> String {
        self.v["smtp"]["host"]
            .as_str()
            .unwrap_or("127.0.0.2")
            .to_string()
    }

    /// `starttls` or `tls` port of the XOAUTH2 pair.
    pub fn smtp_port(&self, mode: &str) -> u16 {
        self.v["smtp"][mode].as_u64().unwrap_or(0) as u16
    }

    /// `starttls` or `tls` port of the OAUTHBEARER-only pair.
    pub fn bearer_port(&self, mode: &str) -> u16 {
        self.v["oauthbearer"]["smtp"][mode].as_u64().unwrap_or(0) as u16
    }

    pub fn ca_file(&self) -> String {
        self.v["ca_file"].as_str().unwrap_or_default().to_string()
    }

    /// A configuration for the stack's IdP (plain http on loopback) and
    /// SMTP server, cache in `cache_dir`; `extra` merged at the top level.
    pub fn config_json(&self, cache_dir: &std::path::Path, security: &str, extra: Value) -> String {
        let port = self.smtp_port(if security == "tls" { "tls" } else { "starttls" });
        let mut v = json!({
            "provider": "custom",
            "authority": self.idp_http(),
            "allow_plaintext_loopback": true,
            "tenant": self.v["idp"]["tenant"],
            "client_id": self.v["idp"]["client_id"],
            "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE},
            "browser": "none",
            "http": {"proxy": "none", "timeout_ms": 10000},
            "servers": {"smtp": {"host": self.smtp_host(), "port": port, "security": security}},
            "tls": {"ca_file": self.ca_file()},
            "cache": {"path": cache_dir.to_string_lossy(), "protection": "none"},
        });
        if let (Value::Object(b), Value::Object(e)) = (&mut v, extra) {
            for (k, x) in e {
                b.insert(k, x);
            }
        }
        v.to_string()
    }

    pub fn config(
        &self,
        cache_dir: &std::path::Path,
        security: &str,
        extra: Value,
    ) -> mailoauth::Config {
        match mailoauth::config::parse(&self.config_json(cache_dir, security, extra)) {
            Ok(p) => p.config,
            Err(e) => panic!("test configuration refused: {}", e.message.en),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let r = crate::support::http_request(
            "POST",
            self.idp_port(),
            path,
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
        );
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    pub fn get(&self, path: &str) -> Value {
        let r = crate::support::http_request("GET", self.idp_port(), path, None, &[]);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    /// An access token for `user` with the SMTP scope (or `scopes`).
    pub fn mint(&self, user: &str, scopes: &[&str]) -> Secret {
        let scopes: Vec<&str> = if scopes.is_empty() {
            vec![SMTP_SCOPE]
        } else {
            scopes.to_vec()
        };
        let v = self.post("/admin/mint", &json!({"user": user, "scopes": scopes}));
        Secret::new(v["access_token"].as_str().expect("a minted token"))
    }

    /// The maildir of `address` (`new/` holds delivered mail).
    pub fn maildir(&self, address: &str) -> PathBuf {
        let (local, domain) = address.split_once('@').expect("an address");
        let pattern = self.v["maildir"].as_str().unwrap_or_default();
        PathBuf::from(pattern.replace("%d", domain).replace("%n", local))
    }

    /// Waits for a delivered message to `address` that contains `needle`.
    pub fn wait_for_mail(&self, address: &str, needle: &str, timeout: Duration) -> Vec<u8> {
        let dir = self.maildir(address);
        let deadline = Instant::now() + timeout;
        loop {
            for sub in ["new", "cur"] {
                if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                    for e in rd.flatten() {
                        if let Ok(bytes) = std::fs::read(e.path())
                            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
                        {
                            return bytes;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no mail to {address} containing {needle} within {timeout:?} (maildir {})",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many messages `address` has received so far.
    pub fn mail_count(&self, address: &str) -> usize {
        let dir = self.maildir(address);
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(dir.join(s))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// A short unique tag for recipients and subjects.
pub fn nonce() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "{:x}{}{}",
        t,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
