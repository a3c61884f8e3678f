//! The admin CLI (`mailoauth-cli`) as a user runs it: the built binary
//! against the local stack. diagnose all OK and with an unknown client_id
//! (AADSTS700016 with what to change), the JSON shapes of accounts and
//! token --check (the token only with --show-token), a device-code consent
//! approved through the identity imitation, send and poll, usage errors
//! (exit 2), and German output.
//!
//! Each test has its own cache folder; grants are minted tokens put into
//! it (the device-code test signs in for real).

mod smtp_common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use smtp_common::{IMAP_SCOPE, POP_SCOPE, SMTP_SCOPE, Stack};

const BIN: &str = env!("CARGO_BIN_EXE_mailoauth-cli");
const USER: &str = "carol@contoso.test";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A configuration file for the stack in `dir` (cache in `dir/cache`);
/// `extra` merged at the top level.
fn config_file(st: &Stack, dir: &Path, extra: Value) -> PathBuf {
    let host = st.smtp_host();
    let mut v = json!({
        "provider": "custom",
        "authority": st.idp_http(),
        "allow_plaintext_loopback": true,
        "tenant": st.v["idp"]["tenant"],
        "client_id": st.v["idp"]["client_id"],
        "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE},
        "servers": {
            "smtp": {"host": host, "port": st.v["smtp"]["starttls"], "security": "starttls"},
            "imap": {"host": host, "port": st.v["imap"]["tls"], "security": "tls"},
            "pop3": {"host": host, "port": st.v["pop3"]["starttls"], "security": "starttls"},
        },
        "browser": "none",
        "tls": {"ca_file": st.ca_file()},
        "http": {"proxy": "none", "timeout_ms": 10000},
        "cache": {"path": dir.join("cache").to_string_lossy(), "protection": "none"},
    });
    if let (Value::Object(b), Value::Object(e)) = (&mut v, extra) {
        for (k, x) in e {
            b.insert(k, x);
        }
    }
    let path = dir.join("config.json");
    std::fs::write(&path, v.to_string()).unwrap();
    path
}

/// A grant for `USER` with a minted access token (all three scopes);
/// returns the token.
fn seed(st: &Stack, dir: &Path) -> String {
    let token = st.mint(USER, &[SMTP_SCOPE, IMAP_SCOPE, POP_SCOPE]);
    let text = token.expose().to_string();
    support::save_grant(&dir.join("cache"), USER, token, 3000, None);
    text
}

/// Runs the CLI with a clean language environment (`LANG=C` unless `env`
/// sets it) and no MAILOAUTH_CONFIG.
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("MAILOAUTH_CONFIG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "C")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json_of(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&o.stdout)))
}

fn step<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["step"] == name))
        .unwrap_or_else(|| panic!("no step {name}: {v}"))
}

#[test]
fn diagnose_passes_every_step_and_prints_no_secret() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&st, dir.path(), json!({}));
    let token = seed(&st, dir.path());
    let cfg = cfg.to_string_lossy().into_owned();
    let o = cli(&["--config", &cfg, "--json", "diagnose"], &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    let v = json_of(&o);
    assert_eq!(v["ok"], true);
    let names: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(
        names,
        ["config", "provider", "app", "token", "smtp", "imap", "pop3"]
    );
    for s in v["steps"].as_array().unwrap() {
        assert_eq!(s["code"], 0, "{s}");
        assert_eq!(s["name"], "OK");
    }
    assert!(!out.contains(&token) && !err.contains(&token));
    // The same as text, from $MAILOAUTH_CONFIG, in English.
    let o = cli(
        &["diagnose", "--account", USER],
        &[("MAILOAUTH_CONFIG", cfg.as_str())],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{err}");
    assert_eq!(out.matches("[OK]").count(), 7, "{out}");
    assert!(out.contains("All checks passed."), "{out}");
    assert!(!out.contains(&token) && !err.contains(&token));
}

#[test]
fn diagnose_names_an_unknown_app_and_what_to_change() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &st,
        dir.path(),
        json!({"client_id": "00000000-0000-0000-0000-00000000dead"}),
    );
    let cfg = cfg.to_string_lossy().into_owned();
    let o = cli(&["--config", &cfg, "--json", "diagnose"], &[]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["ok"], false);
    assert_eq!(step(&v, "config")["code"], 0);
    assert_eq!(step(&v, "provider")["code"], 0);
    let app = step(&v, "app");
    assert_eq!(app["name"], "PROVIDER_ERROR");
    assert_eq!(app["provider_code"], "AADSTS700016");
    assert!(
        app["hint"]
            .as_str()
            .is_some_and(|h| h.contains("client_id"))
    );
    // Text: FAILED, the code, and the hint.
    let o = cli(&["--config", &cfg, "diagnose"], &[]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("[FAILED] app registration accepted"), "{out}");
    assert!(out.contains("what to change:"), "{out}");
    assert!(out.contains("AADSTS700016"), "{out}");
}

#[test]
fn diagnose_tells_a_wrong_client_secret_from_a_good_one() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    for (secret, ok) in [
        ("not-the-secret-0123456789", false),
        (st.v["idp"]["client_secret"].as_str().unwrap(), true),
    ] {
        let cfg = config_file(
            &st,
            dir.path(),
            json!({
                "authority": st.v["idp"]["https"],
                "allow_plaintext_loopback": false,
                "client_id": st.v["idp"]["confidential_client_id"],
                "client_secret": secret,
            }),
        );
        let o = cli(
            &["--config", &cfg.to_string_lossy(), "--json", "diagnose"],
            &[],
        );
        let (out, err) = text(&o);
        assert!(!out.contains(secret) && !err.contains(secret));
        let v = json_of(&o);
        assert_eq!(step(&v, "provider")["code"], 0, "{v}");
        let app = step(&v, "app");
        if ok {
            assert_eq!(app["code"], 0, "{v}");
            assert_eq!(o.status.code(), Some(0), "{v}");
        } else {
            assert_eq!(app["provider_code"], "AADSTS7000215", "{v}");
            assert_eq!(app["provider_error"], "invalid_client");
            assert!(
                app["message"]
                    .as_str()
                    .unwrap()
                    .contains("does not accept the app")
            );
            assert!(
                app["hint"].as_str().is_some_and(|h| h.contains("secret")),
                "{v}"
            );
            assert_eq!(o.status.code(), Some(1));
        }
    }
}

#[test]
fn diagnose_reports_an_unreachable_identity_provider() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config_file(
        &st,
        dir.path(),
        json!({"authority": format!("http://127.0.0.1:{closed}"), "http": {"proxy": "none", "timeout_ms": 2000}}),
    );
    let o = cli(
        &["--config", &cfg.to_string_lossy(), "--json", "diagnose"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json_of(&o);
    let p = step(&v, "provider");
    assert_eq!(p["name"], "NETWORK", "{v}");
    assert!(
        p["hint"].as_str().is_some_and(|h| h.contains("authority")),
        "{v}"
    );
    assert_eq!(step(&v, "app")["name"], "NETWORK", "{v}");
    assert_eq!(v["failed"], 2);
}

#[test]
fn diagnose_stops_at_an_invalid_configuration() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&st, dir.path(), json!({"servers": {"smtp": {"hots": "x"}}}));
    let o = cli(
        &["--config", &cfg.to_string_lossy(), "--json", "diagnose"],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json_of(&o);
    assert_eq!(v["steps"].as_array().unwrap().len(), 1);
    let c = step(&v, "config");
    assert_eq!(c["name"], "INVALID_CONFIG");
    assert!(c["message"].as_str().unwrap().contains("hots"));
}

#[test]
fn accounts_and_token_check_json_shapes() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&st, dir.path(), json!({}));
    let cfg = cfg.to_string_lossy().into_owned();
    // Empty cache: an empty list; token --check fails with CONSENT_REQUIRED.
    let o = cli(&["--config", &cfg, "--json", "accounts"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_of(&o), json!([]));
    let o = cli(
        &[
            "--config",
            &cfg,
            "--json",
            "token",
            "--check",
            "--account",
            USER,
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let v = json_of(&o);
    assert_eq!(v["available"], false);
    assert_eq!(v["error"]["name"], "CONSENT_REQUIRED");

    let token = seed(&st, dir.path());
    let o = cli(&["--config", &cfg, "--json", "accounts"], &[]);
    assert_eq!(o.status.code(), Some(0));
    let v = json_of(&o);
    let a = &v.as_array().unwrap()[0];
    assert_eq!(a["account"], USER);
    assert_eq!(a["state"], "ok");
    assert_eq!(a["protocols"], json!(["smtp", "imap", "pop3"]));
    assert!(a["access_token_expires_at"].as_i64().unwrap() > now());
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&token));

    // The only account is the default.
    let o = cli(&["--config", &cfg, "--json", "token", "--check"], &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v = json_of(&o);
    assert_eq!(v["available"], true);
    assert_eq!(v["account"], USER);
    assert!(v["expires_at"].as_i64().unwrap() > now());
    assert!(v["expires_in_s"].as_i64().unwrap() > 0);
    assert!(v.get("token").is_none());
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&token));
    let o = cli(
        &[
            "--config",
            &cfg,
            "--json",
            "token",
            "--check",
            "--show-token",
        ],
        &[],
    );
    assert_eq!(json_of(&o)["token"], token.as_str());
    // Text output: the expiry, and still no token.
    let o = cli(&["--config", &cfg, "token", "--check"], &[]);
    let (out, _) = text(&o);
    assert!(out.contains("valid until") && out.contains("UTC"), "{out}");
    assert!(!out.contains(&token));
}

#[test]
fn a_device_code_consent_prints_the_code_and_stores_the_grant() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&st, dir.path(), json!({}));
    let mut child = Command::new(BIN)
        .args([
            "--config",
            &cfg.to_string_lossy(),
            "--json",
            "consent",
            "--flow",
            "device",
            "--account",
            USER,
            "--timeout-s",
            "120",
        ])
        .env("LANG", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let code = first["user_code"]
        .as_str()
        .expect("a user code")
        .to_string();
    assert!(first["verification_uri"].as_str().is_some());
    st.post(
        "/admin/device/approve",
        &json!({"user_code": code, "user": USER}),
    );
    let last: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(last["ok"], true);
    assert_eq!(last["result"]["account"], USER);
    let o = cli(
        &["--config", &cfg.to_string_lossy(), "--json", "accounts"],
        &[],
    );
    assert_eq!(json_of(&o)[0]["account"], USER);
}

#[test]
fn send_and_poll_with_ack() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&st, dir.path(), json!({}));
    let cfg = cfg.to_string_lossy().into_owned();
    seed(&st, dir.path());
    let tag = smtp_common::nonce();
    let subject = format!("cli {tag}");
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "attached").unwrap();
    let o = cli(
        &[
            "--config",
            &cfg,
            "--json",
            "send",
            "--to",
            USER,
            "--subject",
            &subject,
            "--body",
            "Grüße",
            "--attachment",
            &file.to_string_lossy(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert_eq!(json_of(&o)["result"]["accepted"], json!([USER]));
    st.wait_for_mail(USER, &tag, Duration::from_secs(30));
    let o = cli(
        &[
            "--config", &cfg, "--json", "poll", "--max", "500", "--ack", "keep",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v = json_of(&o);
    let msgs = v["messages"].as_array().unwrap();
    assert!(msgs.iter().any(|m| m["subject"] == subject.as_str()), "{v}");
    assert_eq!(v["acknowledged"].as_array().unwrap().len(), msgs.len());
    // Acknowledged: not listed again.
    let o = cli(&["--config", &cfg, "--json", "poll", "--max", "500"], &[]);
    let v = json_of(&o);
    assert!(
        !v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"] == subject.as_str())
    );
}

#[test]
fn usage_errors_exit_2() {
    // No configuration.
    let o = cli(&["accounts"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--config"));
    // A configuration file that does not exist.
    let o = cli(
        &["--config", "/nonexistent/mailoauth.json", "accounts"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    // Unknown command, unknown flag, bad value, missing required flag.
    for args in [
        vec!["frobnicate"],
        vec!["accounts", "--colour"],
        vec!["--lang", "fr", "accounts"],
        vec!["send", "--subject", "x"],
        vec!["poll", "--protocol", "nntp"],
        vec![],
    ] {
        let o = cli(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {:?}", text(&o));
    }
    // Help is no error.
    assert_eq!(cli(&["--help"], &[]).status.code(), Some(0));
}

#[test]
fn german_from_lang_and_from_the_flag() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &st,
        dir.path(),
        json!({"client_id": "00000000-0000-0000-0000-00000000dead"}),
    );
    let cfg = cfg.to_string_lossy().into_owned();
    for (args, env) in [
        (vec!["--config", cfg.as_str(), "diagnose"], "de_DE.UTF-8"),
        (
            vec!["--config", cfg.as_str(), "--lang", "de", "diagnose"],
            "C",
        ),
    ] {
        let o = cli(&args, &[("LANG", env)]);
        let (out, _) = text(&o);
        assert_eq!(o.status.code(), Some(1));
        assert!(out.contains("[OK]     Konfiguration: gültig"), "{out}");
        assert!(
            out.contains("[FEHLER] App-Registrierung akzeptiert"),
            "{out}"
        );
        assert!(out.contains("was zu ändern ist:"), "{out}");
        assert!(out.contains("Kontotest übersprungen"), "{out}");
    }
    // --lang en wins over a German LANG.
    let o = cli(
        &["--config", cfg.as_str(), "--lang", "en", "diagnose"],
        &[("LANG", "de_DE.UTF-8")],
    );
    assert!(text(&o).0.contains("[FAILED]"));
    // Usage errors in German too.
    let o = cli(&["accounts"], &[("LANG", "de_DE.UTF-8")]);
    assert!(text(&o).1.contains("keine Konfiguration"), "{:?}", text(&o));
}
