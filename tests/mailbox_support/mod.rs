//! Helpers for the mailbox tests against the shared local mail stack
//! (tests/stack): the stack file, tokens minted by the identity imitation,
//! seeded maildirs of users that only one test uses, endpoints. Only
//! user-scoped admin calls: other tests share the stack.

#![allow(dead_code)]

pub mod open;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use mailoauth::config::Security;
use mailoauth::mailbox::net::Endpoint;
use mailoauth::secret::Secret;
use serde_json::{Value, json};

pub const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";
pub const POP_SCOPE: &str = "https://outlook.office.com/POP.AccessAsUser.All";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Stack {
    pub v: Value,
    pub config: mailoauth::Config,
}

/// The running stack, or None (after printing why the test is skipped).
pub fn stack() -> Option<Stack> {
    let path = std::env::var("MAILOAUTH_STACK_FILE")
        .unwrap_or_else(|_| "/tmp/mailoauth-stack.json".to_string());
    let Some(v) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        if std::env::var_os("MAILOAUTH_REQUIRE_STACK").is_some() {
            panic!("the local stack is not running ({path}) but MAILOAUTH_REQUIRE_STACK is set");
        }
        println!("skipped: the local stack is not running (tests/run.sh starts it)");
        return None;
    };
    let ca = v["ca_file"].as_str().unwrap_or_default().to_string();
    let host = v["imap"]["host"]
        .as_str()
        .unwrap_or("127.0.0.2")
        .to_string();
    let json = json!({
        "provider": "custom",
        "authority": v["idp"]["http"],
        "allow_plaintext_loopback": true,
        "tenant": v["idp"]["tenant"],
        "client_id": v["idp"]["client_id"],
        "scopes": {"imap": IMAP_SCOPE, "pop3": POP_SCOPE},
        "servers": {"imap": {"host": host, "port": 10993, "security": "tls"},
                    "pop3": {"host": host, "port": 10995, "security": "tls"}},
        "browser": "none",
        "tls": {"ca_file": ca},
        "http": {"proxy": "none", "timeout_ms": 10000},
    });
    let config = match mailoauth::config::parse(&json.to_string()) {
        Ok(p) => p.config,
        Err(e) => panic!("test configuration refused: {}", e.message.en),
    };
    Some(Stack { v, config })
}

impl Stack {
    fn idp_port(&self) -> u16 {
        let http = self.v["idp"]["http"].as_str().unwrap_or_default();
        url::Url::parse(http)
            .ok()
            .and_then(|u| u.port())
            .unwrap_or(10088)
    }

    pub fn admin(&self, path: &str, body: Value) -> Value {
        let body = body.to_string();
        let r = crate::support::http_request(
            "POST",
            self.idp_port(),
            path,
            Some(body.as_bytes()),
            &[("Content-Type", "application/json")],
        );
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    /// A fresh access token for `user`: delegated (IMAP and POP scopes)
    /// for the imitation's known users, else an app-only token bound to
    /// that mailbox (the imitation mints delegated tokens only for users
    /// it knows, and its user list is global: not changed here).
    pub fn mint(&self, user: &str) -> Secret {
        let known = self.v["users"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(user)));
        let body = if known {
            json!({"user": user, "scopes": [IMAP_SCOPE, POP_SCOPE]})
        } else {
            json!({"app_mailbox": user, "roles": ["IMAP.AccessAsApp", "POP.AccessAsApp"]})
        };
        let v = self.admin("/admin/mint", body);
        Secret::new(v["access_token"].as_str().expect("a minted token"))
    }

    pub fn expire_tokens(&self, user: &str) {
        self.admin("/admin/expire_access_tokens", json!({"user": user}));
    }

    pub fn revoke_tokens(&self, user: &str) {
        self.admin("/admin/revoke_access_tokens", json!({"user": user}));
    }

    /// An endpoint: `proto` is "imap" or "pop3"; `oauthbearer` picks the
    /// OAUTHBEARER-only twin.
    pub fn endpoint(&self, proto: &str, security: Security, oauthbearer: bool) -> Endpoint {
        let e = if oauthbearer {
            &self.v["oauthbearer"][proto]
        } else {
            &self.v[proto]
        };
        let host = e["host"].as_str().unwrap_or("127.0.0.2");
        let port = match security {
            Security::Tls => e["tls"].as_u64(),
            _ => e["starttls"].as_u64(),
        }
        .unwrap_or(0) as u16;
        Endpoint::new(&self.config, host, port, security).expect("endpoint")
    }

    /// Seeds messages (`seed.py`); returns what it printed.
    pub fn seed(&self, user: &str, args: &[&str]) -> String {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("python3")
            .arg(root.join("tests/stack/seed.py"))
            .args(["--user", user])
            .args(args)
            .output()
            .expect("run seed.py");
        assert!(
            out.status.success(),
            "seed.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The user's maildir (`folder` None: INBOX).
    pub fn maildir(&self, user: &str, folder: Option<&str>) -> PathBuf {
        let pattern = self.v["maildir"].as_str().unwrap_or_default();
        let (local, domain) = user.split_once('@').unwrap_or((user, ""));
        let mut p = PathBuf::from(pattern.replace("%d", domain).replace("%n", local));
        if let Some(f) = folder {
            p = p.join(format!(".{f}"));
        }
        p
    }

    /// Every message file of a maildir folder (new/ and cur/), sorted.
    pub fn stored_messages(&self, user: &str, folder: Option<&str>) -> Vec<Vec<u8>> {
        let dir = self.maildir(user, folder);
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    out.push(std::fs::read(e.path()).expect("read message"));
                }
            }
        }
        out.sort();
        out
    }

    /// Maildir file names in cur/ and new/ (flags after `:2,`).
    pub fn stored_names(&self, user: &str, folder: Option<&str>) -> Vec<String> {
        let dir = self.maildir(user, folder);
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
                for e in rd.flatten() {
                    out.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        out
    }
}

impl Stack {
    /// Puts one message into a maildir folder's new/ (via tmp/, owned like
    /// the folder, as seed.py does); the folder must exist (seed first).
    pub fn put_message(&self, user: &str, folder: Option<&str>, name: &str, data: &[u8]) {
        use std::os::unix::fs::MetadataExt;
        let dir = self.maildir(user, folder);
        let meta = std::fs::metadata(dir.join("new")).expect("the maildir exists (seed first)");
        let file = format!(
            "{}.{name}.mailoauth-test,S={}",
            SEQ.fetch_add(1, Ordering::SeqCst) + 1_000_000_000,
            data.len()
        );
        let tmp = dir.join("tmp").join(&file);
        std::fs::write(&tmp, data).expect("write message");
        std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid())).expect("chown");
        std::fs::rename(&tmp, dir.join("new").join(&file)).expect("rename");
    }

    /// Gives a maildir folder a new UIDVALIDITY for real, as a re-created
    /// folder has: dovecot-uidlist rewritten with `UIDVALIDITY + 1000` and
    /// new UIDs (the old ones shifted by 100, in reverse order), Dovecot's
    /// indexes removed so that it reads the list again. No session may
    /// have the folder open. Returns (old, new) UIDVALIDITY.
    pub fn change_uid_validity(&self, user: &str, folder: Option<&str>) -> (u32, u32) {
        let dir = self.maildir(user, folder);
        let list = dir.join("dovecot-uidlist");
        let text = std::fs::read_to_string(&list).expect("dovecot-uidlist");
        let mut lines = text.lines();
        let header = lines.next().expect("uidlist header");
        let old: u32 = header
            .split(' ')
            .find_map(|w| w.strip_prefix('V'))
            .and_then(|v| v.parse().ok())
            .expect("V<uidvalidity> in the uidlist header");
        let names: Vec<&str> = lines
            .filter_map(|l| l.split_once(" :").map(|(_, n)| n))
            .collect();
        let new = old + 1000;
        let max = 100 + names.len() as u32;
        let mut out = format!("3 V{new} N{}\n", max + 1);
        for (i, n) in names.iter().rev().enumerate() {
            out.push_str(&format!("{} :{n}\n", 101 + i as u32));
        }
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&list).expect("uidlist metadata");
        std::fs::write(&list, out).expect("write uidlist");
        std::os::unix::fs::chown(&list, Some(meta.uid()), Some(meta.gid())).expect("chown");
        for e in std::fs::read_dir(&dir).expect("maildir").flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("dovecot.index") || n.starts_with("dovecot.list.index") {
                std::fs::remove_file(e.path()).expect("remove index");
            }
        }
        (old, new)
    }
}

/// What Dovecot's IMAP (non-BINARY FETCH) makes of a stored message: bare
/// LF to CRLF, NUL to 0x80.
pub fn imap_normalised(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 16);
    for (i, &b) in m.iter().enumerate() {
        match b {
            b'\n' if i == 0 || m[i - 1] != b'\r' => out.extend_from_slice(b"\r\n"),
            0 => out.push(0x80),
            _ => out.push(b),
        }
    }
    out
}

/// What Dovecot's POP3 makes of a stored message when it sends it.
pub fn pop3_normalised(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 16);
    for (i, &b) in m.iter().enumerate() {
        match b {
            b'\n' if i == 0 || m[i - 1] != b'\r' => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A user nobody else uses (Dovecot creates the maildir on first use).
pub fn unique_user(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}@contoso.test",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}
