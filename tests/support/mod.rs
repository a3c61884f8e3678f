//! Shared helpers for the Rust integration tests: the local identity
//! imitation (`tests/stack/idp`) as a child process, a tiny HTTP/1.1 client
//! over `std::net::TcpStream` (plain http on 127.0.0.1 only), and
//! configurations that point the library at the imitation.
//!
//! Use from a test file with `mod support;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const PUBLIC_CLIENT: &str = "00000000-0000-0000-0000-0000000000a1";
pub const CONFIDENTIAL_CLIENT: &str = "00000000-0000-0000-0000-0000000000a2";
pub const CONFIDENTIAL_SECRET: &str = "idp-test-secret-a2-0123456789";
pub const SMTP_SCOPE: &str = "https://outlook.office.com/SMTP.Send";
pub const IMAP_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All";
pub const POP_SCOPE: &str = "https://outlook.office.com/POP.AccessAsUser.All";
pub const APP_SCOPE: &str = "https://outlook.office365.com/.default";
pub const ALICE: &str = "alice@contoso.test";
pub const BOB: &str = "bob@contoso.test";
pub const SERVICE_MAILBOX: &str = "service@contoso.test";

static BUILD: Mutex<bool> = Mutex::new(false);
static SEQ: AtomicU32 = AtomicU32::new(0);

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The imitation's binary: `$MAILOAUTH_IDP_BIN`, else
/// `target/debug/mailoauth-test-idp` (built once per test binary when
/// missing).
pub fn idp_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MAILOAUTH_IDP_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let bin = target.join("debug").join("mailoauth-test-idp");
    let mut built = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !bin.exists() && !*built {
        *built = true;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "mailoauth-test-idp"])
            .current_dir(workspace_root())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            panic!(
                "could not build the identity imitation: run `cargo build -p mailoauth-test-idp` ({status:?})"
            );
        }
    }
    assert!(
        bin.exists(),
        "identity imitation not found at {}: run `cargo build -p mailoauth-test-idp` or set MAILOAUTH_IDP_BIN",
        bin.display()
    );
    bin
}

/// A running identity imitation (HTTP and HTTPS on 127.0.0.1, fresh
/// certificates); killed when dropped.
pub struct Idp {
    child: Child,
    pub http_port: u16,
    pub https_port: u16,
    pub dir: PathBuf,
}

impl Idp {
    pub fn start() -> Idp {
        let bin = idp_binary();
        let dir = std::env::temp_dir().join(format!(
            "mailoauth-idp-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        make_certificates(&dir);
        let ports = dir.join("ports.json");
        let log = std::fs::File::create(dir.join("idp.log")).expect("log file");
        let child = Command::new(bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--http-port",
                "0",
                "--https-port",
                "0",
            ])
            .arg("--tls-cert")
            .arg(dir.join("server.pem"))
            .arg("--tls-key")
            .arg(dir.join("server.key"))
            .arg("--ports-file")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the identity imitation");
        let mut idp = Idp {
            child,
            http_port: 0,
            https_port: 0,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Ok(v) = serde_json::from_str::<Value>(&text)
            {
                idp.http_port = v["http"].as_u64().unwrap_or(0) as u16;
                idp.https_port = v["https"].as_u64().unwrap_or(0) as u16;
                if idp.http_port != 0 {
                    break;
                }
            }
            if let Ok(Some(status)) = idp.child.try_wait() {
                panic!(
                    "the identity imitation exited at start: {status}; see {}",
                    idp.dir.display()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the identity imitation did not start in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        idp
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn tls_base(&self) -> String {
        format!("https://127.0.0.1:{}", self.https_port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn get(&self, path: &str) -> Value {
        let r = http_request("GET", self.http_port, path, None, &[]);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let r = http_request(
            "POST",
            self.http_port,
            path,
            Some(body.to_string().as_bytes()),
            &[("Content-Type", "application/json")],
        );
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or(Value::Null)
    }

    pub fn settings(&self, patch: Value) -> Value {
        self.post("/admin/settings", &patch)
    }

    pub fn fail(&self, fault: Value) -> Value {
        self.post("/admin/fail", &fault)
    }

    pub fn counters(&self) -> Value {
        self.get("/admin/counters")
    }

    pub fn approve_device(&self, user_code: &str, user: Option<&str>) -> Value {
        let mut b = json!({"user_code": user_code});
        if let Some(u) = user {
            b["user"] = u.into();
        }
        self.post("/admin/device/approve", &b)
    }

    pub fn deny_device(&self, user_code: &str) -> Value {
        self.post("/admin/device/deny", &json!({"user_code": user_code}))
    }

    pub fn secrets(&self) -> Vec<String> {
        match self.get("/admin/secrets") {
            Value::Array(a) => a
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn reset(&self) -> Value {
        self.post("/admin/reset", &json!({}))
    }

    /// The configuration JSON for this imitation over plain http (public
    /// client …a1, browser none), with `extra` merged in at the top level.
    pub fn config_json(&self, extra: Value) -> String {
        let mut v = json!({
            "provider": "custom",
            "authority": self.base(),
            "allow_plaintext_loopback": true,
            "tenant": TENANT,
            "client_id": PUBLIC_CLIENT,
            "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE, "app": APP_SCOPE},
            "browser": "none",
            "http": {"proxy": "none", "timeout_ms": 10000},
        });
        merge(&mut v, extra);
        v.to_string()
    }

    pub fn config(&self, extra: Value) -> mailoauth::Config {
        parse_config(&self.config_json(extra))
    }

    /// Over https with the fresh CA as `tls.ca_file`, confidential client
    /// …a2 with its secret (app flow).
    pub fn app_config(&self, extra: Value) -> mailoauth::Config {
        let mut v = json!({
            "provider": "custom",
            "authority": self.tls_base(),
            "tenant": TENANT,
            "client_id": CONFIDENTIAL_CLIENT,
            "client_secret": CONFIDENTIAL_SECRET,
            "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE, "app": APP_SCOPE},
            "browser": "none",
            "tls": {"ca_file": self.ca_file().to_string_lossy()},
            "http": {"proxy": "none", "timeout_ms": 10000},
        });
        merge(&mut v, extra);
        parse_config(&v.to_string())
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn parse_config(json: &str) -> mailoauth::Config {
    match mailoauth::config::parse(json) {
        Ok(p) => p.config,
        Err(e) => panic!("test configuration refused: {}", e.message.en),
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

fn make_certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        assert!(
            matches!(out, Ok(s) if s.success()),
            "openssl {:?} failed (openssl is needed for the TLS tests)",
            args.first()
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-sha256",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=mailoauth test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-sha256",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n",
    )
    .expect("server.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

/// A parsed HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`).
pub fn http_request(
    method: &str,
    port: u16,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Response {
    try_http_request(method, port, path, body, headers).unwrap_or_else(|e| {
        panic!(
            "{method} 127.0.0.1:{port}{}: {e}",
            path.split('?').next().unwrap_or("")
        )
    })
}

pub fn try_http_request(
    method: &str,
    port: u16,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// Splits an absolute http URL into (port, path-and-query). Host must be
/// 127.0.0.1 or localhost.
pub fn split_url(u: &str) -> (u16, String) {
    let url = url::Url::parse(u).expect("a URL");
    assert!(
        matches!(url.host_str(), Some("127.0.0.1") | Some("localhost")),
        "not a loopback URL: {}",
        url.host_str().unwrap_or("")
    );
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    (url.port().unwrap_or(80), path)
}

/// GET of the authorize URL with auto_consent on: the 302's Location.
pub fn authorize_redirect(authorize_url: &str) -> String {
    let (port, path) = split_url(authorize_url);
    let r = http_request("GET", port, &path, None, &[]);
    assert_eq!(r.status, 302, "authorize answered {}: {}", r.status, r.body);
    r.headers
        .get("location")
        .cloned()
        .expect("a Location header")
}

/// Shows the sign-in page (auto_consent off) and submits it: `accept`
/// with `username`, or cancel. Returns the 302's Location.
pub fn authorize_decide(authorize_url: &str, accept: bool, username: Option<&str>) -> String {
    let (port, path) = split_url(authorize_url);
    let page = http_request("GET", port, &path, None, &[]);
    assert_eq!(page.status, 200, "sign-in page: {}", page.body);
    let action = attr_after(&page.body, "<form id=\"signin\"", "action").expect("form action");
    let txn = attr_after(&page.body, "name=\"txn\"", "value").expect("txn");
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("txn", &txn);
    form.append_pair("decision", if accept { "accept" } else { "cancel" });
    if let Some(u) = username {
        form.append_pair("username", u);
    }
    let body = form.finish();
    let r = http_request(
        "POST",
        port,
        &html_unescape(&action),
        Some(body.as_bytes()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
    );
    assert_eq!(r.status, 302, "decide answered {}: {}", r.status, r.body);
    r.headers
        .get("location")
        .cloned()
        .expect("a Location header")
}

fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let start = html.find(marker)?;
    let rest = &html[start..];
    let key = format!("{attr}=\"");
    let i = rest.find(&key)? + key.len();
    let end = rest[i..].find('"')?;
    Some(html_unescape(&rest[i..i + end]))
}

fn html_unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Follows a redirect to our loopback listener like a browser would.
pub fn follow_to_listener(location: &str) -> Response {
    let (port, path) = split_url(location);
    http_request("GET", port, &path, None, &[])
}

/// Asserts that no secret the imitation ever issued or received appears in
/// any text of these errors.
pub fn assert_no_secrets(idp: &Idp, errors: &[&mailoauth::Error]) {
    let secrets = idp.secrets();
    assert!(!secrets.is_empty(), "the imitation reported no secrets");
    for e in errors {
        let mut texts = vec![e.message.en.clone(), e.message.de.clone()];
        if let Some(h) = &e.hint {
            texts.push(h.en.clone());
            texts.push(h.de.clone());
        }
        texts.extend(e.provider_error.clone());
        texts.extend(e.provider_code.clone());
        texts.extend(e.correlation_id.clone());
        texts.extend(e.server_reply.clone());
        for t in &texts {
            for s in &secrets {
                assert!(!t.contains(s.as_str()), "an error text holds a secret: {t}");
            }
        }
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The file store of an unprotected cache folder, as the tests' contexts
/// (`"protection": "none"`) use it.
pub fn file_store(cache: &Path) -> mailoauth::cache::GrantStore {
    mailoauth::cache::GrantStore::for_folder(
        &mailoauth::config::CacheConfig {
            path: Some(cache.to_path_buf()),
            protection: mailoauth::config::Protection::None,
        },
        None,
    )
    .unwrap()
}

/// Saves a delegated grant for `account` in the unprotected cache at
/// `cache`, consented for all three protocols: `access` as its access token,
/// issued now and valid for `valid_s` more seconds (negative: expired), and
/// `refresh` as its refresh token.
pub fn save_grant(
    cache: &Path,
    account: &str,
    access: mailoauth::secret::Secret,
    valid_s: i64,
    refresh: Option<mailoauth::secret::Secret>,
) {
    use mailoauth::cache::{AccessToken, Grant, GrantState};
    use mailoauth::protocol::Protocols;
    let t = mailoauth::auth::now();
    file_store(cache)
        .save(&Grant {
            account: account.to_string(),
            username: Some(account.to_string()),
            tenant_id: None,
            oid: None,
            protocols: Protocols::ALL,
            app: false,
            refresh_token: refresh,
            access_token: Some(AccessToken {
                token: access,
                issued_at: t.min(t + valid_s),
                expires_at: t + valid_s,
                protocols: Protocols::ALL,
            }),
            state: GrantState::Ok,
            since: t,
            not_before: None,
            last_error: None,
        })
        .unwrap();
}
