//! The token manager against the local identity imitation: consent once,
//! silent tokens for every protocol, refresh and rotation, consent for more
//! protocols keeping the grant, invalid_grant failing fast, transient
//! failures never losing the refresh token, several "processes" (contexts on
//! one cache folder) refreshing one account under strict rotation.

mod support;

use std::sync::Arc;
use std::time::Duration;

use mailoauth::Context;
use mailoauth::cache::GrantState;
use mailoauth::error::ErrorKind;
use mailoauth::protocol::Protocols;
use serde_json::{Value, json};
use support::*;

const ALICE: &str = "alice@contoso.test";

/// A context on the imitation with its cache in `dir`.
fn context(idp: &Idp, dir: &std::path::Path, protection: &str) -> Arc<Context> {
    let json = idp
        .config_json(json!({"cache": {"path": dir.to_string_lossy(), "protection": protection}}));
    Arc::new(Context::new(parse_config(&json)).unwrap())
}

/// Runs a browser consent with auto-consent on, driving the authorize URL
/// like a browser, and settles it (stores the grant).
fn consent(ctx: &Context, account: &str, protocols: &[&str]) {
    let req = json!({"account": account, "protocols": protocols, "flow": "browser"}).to_string();
    let op = ctx.consent_begin(&req).unwrap();
    let url = op.info()["authorize_url"].as_str().unwrap().to_string();
    let location = authorize_redirect(&url);
    let page = follow_to_listener(&location);
    assert_eq!(page.status, 200, "{}", page.body);
    let outcome = ctx
        .consent_settle(&op, Duration::from_secs(20))
        .expect("finished");
    outcome.unwrap();
    assert_eq!(op.info()["state"], "done");
}

fn counter(idp: &Idp, grant: &str) -> u64 {
    idp.counters()["token"][grant].as_u64().unwrap_or(0)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn one_consent_serves_every_protocol_silently_and_across_processes() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "user");
    consent(&ctx, ALICE, &["smtp", "imap", "pop3"]);
    let codes = counter(&idp, "authorization_code");
    assert_eq!(codes, 1);
    // The consent's access token serves every protocol: no refresh at all.
    let t1 = ctx
        .token_get(ALICE, Protocols::parse_list("smtp").unwrap(), false)
        .unwrap();
    let t2 = ctx
        .token_get(ALICE, Protocols::parse_list("imap pop3").unwrap(), false)
        .unwrap();
    assert_eq!(t1.expose(), t2.expose());
    assert_eq!(counter(&idp, "refresh_token"), 0);
    // Another "process" on the same cache folder: same grant, no consent.
    let other = context(&idp, dir.path(), "user");
    let t3 = other.token_get(ALICE, Protocols::ALL, false).unwrap();
    assert_eq!(t3.expose(), t1.expose());
    assert_eq!(counter(&idp, "authorization_code"), codes);
    // The grant is listed, without secrets.
    let list = other.accounts().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].username.as_deref(), Some(ALICE));
    assert_eq!(list[0].protocols, Protocols::ALL);
    assert_eq!(list[0].state, GrantState::Ok);
    // The cache file holds no token in the clear.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for s in idp.secrets() {
            assert!(!text.contains(&s), "a secret is stored in the clear");
        }
    }
}

#[test]
fn forced_refresh_rotates_and_persists_the_refresh_token() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true, "rotation": "strict"}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    consent(&ctx, ALICE, &["imap"]);
    let first = ctx
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), false)
        .unwrap();
    for _ in 0..3 {
        let t = ctx
            .token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
            .unwrap();
        assert_ne!(t.expose(), first.expose());
    }
    assert_eq!(counter(&idp, "refresh_token"), 3);
    // Strict rotation: each refresh used the previous one's refresh token,
    // so the stored one must be the newest: a fresh process can refresh too.
    let other = context(&idp, dir.path(), "none");
    other
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap();
    assert_eq!(counter(&idp, "refresh_token"), 4);
}

#[test]
fn a_protocol_never_consented_needs_consent_and_a_new_consent_keeps_the_grant() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    consent(&ctx, ALICE, &["smtp"]);
    let e = ctx
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), false)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert!(e.message.en.contains("imap"), "{}", e.message.en);
    ctx.token_get(ALICE, Protocols::parse_list("smtp").unwrap(), false)
        .unwrap();
    consent(&ctx, ALICE, &["imap"]);
    ctx.token_get(ALICE, Protocols::parse_list("imap").unwrap(), false)
        .unwrap();
    ctx.token_get(ALICE, Protocols::parse_list("smtp").unwrap(), true)
        .unwrap();
    let list = ctx.accounts().unwrap();
    assert_eq!(
        list[0].protocols,
        Protocols::parse_list("smtp imap").unwrap()
    );
}

#[test]
fn invalid_grant_marks_the_account_and_later_calls_fail_fast() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    consent(&ctx, ALICE, &["smtp", "imap"]);
    idp.post("/admin/revoke_refresh_tokens", &json!({"aadsts": 700082}));
    let e = ctx
        .token_get(ALICE, Protocols::parse_list("smtp").unwrap(), true)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS700082"));
    let errors_before = idp.counters()["token"]["errors"].as_u64().unwrap();
    // Fails fast: the provider is not asked again within the minute.
    let e2 = ctx
        .token_get(ALICE, Protocols::parse_list("smtp").unwrap(), false)
        .unwrap_err();
    assert_eq!(e2.kind, ErrorKind::ConsentRequired);
    assert_eq!(e2.provider_code.as_deref(), Some("AADSTS700082"));
    assert!(e2.hint.is_some());
    assert_eq!(
        idp.counters()["token"]["errors"].as_u64().unwrap(),
        errors_before
    );
    let list = ctx.accounts().unwrap();
    assert_eq!(list[0].state, GrantState::ConsentRequired);
    assert!(list[0].last_error.is_some());
    // The refresh token is kept (MSAL's rule), and a new consent heals it.
    assert!(list[0].refresh_token.is_some());
    consent(&ctx, ALICE, &["smtp"]);
    ctx.token_get(ALICE, Protocols::parse_list("smtp imap").unwrap(), true)
        .unwrap();
    assert_eq!(ctx.accounts().unwrap()[0].state, GrantState::Ok);
    assert_no_secrets(&idp, &[&e, &e2]);
}

#[test]
fn transient_failures_are_retried_and_never_lose_the_grant() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    consent(&ctx, ALICE, &["imap"]);
    idp.fail(json!({"endpoint": "token", "count": 2, "status": 503}));
    ctx.token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap();
    // A longer outage: the call fails cleanly, the grant survives.
    idp.fail(json!({"endpoint": "token", "count": 3, "status": 503}));
    let e = ctx
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap_err();
    assert!(e.transient, "{e:?}");
    ctx.token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap();
    // Throttled with a long Retry-After: THROTTLED with the delay, and the
    // account is marked until then; the refresh token is still there.
    idp.fail(json!({"endpoint": "token", "count": 1, "status": 429, "retry_after": 120}));
    let e = ctx
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled);
    assert!(e.retry_after_s.unwrap_or(0) >= 100);
    let again = ctx
        .token_get(ALICE, Protocols::parse_list("imap").unwrap(), true)
        .unwrap_err();
    assert_eq!(again.kind, ErrorKind::Throttled);
    let g = &ctx.accounts().unwrap()[0];
    assert_eq!(g.state, GrantState::Throttled);
    assert!(g.refresh_token.is_some());
    // Until then, a still-valid cached token is handed out as usual.
    ctx.token_get(ALICE, Protocols::parse_list("imap").unwrap(), false)
        .unwrap();
}

#[test]
fn contexts_sharing_a_folder_refresh_once_per_window_under_strict_rotation() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true, "rotation": "strict"}));
    let dir = tmp();
    let first = context(&idp, dir.path(), "user");
    consent(&first, ALICE, &["smtp", "imap", "pop3"]);
    // Two "processes" with four threads each, all forcing a refresh at the
    // same moment: every call succeeds although each refresh token works
    // only once, because the lock serialises them and the store is re-read.
    let contexts: Vec<Arc<Context>> = (0..2).map(|_| context(&idp, dir.path(), "user")).collect();
    let mut threads = Vec::new();
    for ctx in &contexts {
        for _ in 0..4 {
            let ctx = ctx.clone();
            threads.push(std::thread::spawn(move || {
                for i in 0..5 {
                    let p = ["smtp", "imap", "pop3"][i % 3];
                    ctx.token_get(ALICE, Protocols::parse_list(p).unwrap(), i == 0)
                        .map_err(|e| e.message.en.clone())?;
                }
                Ok::<(), String>(())
            }));
        }
    }
    for t in threads {
        t.join().unwrap().unwrap();
    }
    // 8 forced refreshes at most; the 32 other calls used the cache.
    assert!(counter(&idp, "refresh_token") <= 8, "{}", idp.counters());
}

#[test]
fn sign_out_removes_the_grant() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    consent(&ctx, ALICE, &["smtp"]);
    ctx.account_remove(ALICE).unwrap();
    let e = ctx
        .token_get(ALICE, Protocols::parse_list("smtp").unwrap(), false)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert_eq!(
        ctx.account_remove(ALICE).unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(ctx.accounts().unwrap().is_empty());
}

#[test]
fn app_grants_get_new_tokens_with_the_client_secret() {
    let idp = Idp::start();
    idp.settings(json!({"access_token_lifetime_s": 60}));
    let dir = tmp();
    let mut cfg: Value = serde_json::from_str(&idp.config_json(json!({}))).unwrap();
    cfg["authority"] = json!(idp.tls_base());
    cfg["allow_plaintext_loopback"] = json!(false);
    cfg["client_id"] = json!("00000000-0000-0000-0000-0000000000a2");
    cfg["client_secret"] = json!("idp-test-secret-a2-0123456789");
    cfg["tls"] = json!({"ca_file": idp.ca_file().to_string_lossy()});
    cfg["cache"] = json!({"path": dir.path().to_string_lossy(), "protection": "none"});
    let ctx = Context::new(parse_config(&cfg.to_string())).unwrap();
    let op = ctx
        .consent_begin(
            r#"{"account":"service@contoso.test","flow":"app","protocols":["imap","smtp"]}"#,
        )
        .unwrap();
    ctx.consent_settle(&op, Duration::from_secs(20))
        .unwrap()
        .unwrap();
    let t1 = ctx
        .token_get(
            "service@contoso.test",
            Protocols::parse_list("imap").unwrap(),
            false,
        )
        .unwrap();
    // Lifetime 60 s: half of it is under 5 minutes, so the token is still
    // fresh now; a forced refresh asks for a new one with the secret.
    let t2 = ctx
        .token_get(
            "service@contoso.test",
            Protocols::parse_list("smtp").unwrap(),
            true,
        )
        .unwrap();
    assert_ne!(t1.expose(), t2.expose());
    assert_eq!(counter(&idp, "client_credentials"), 2);
    let e = ctx
        .token_get(
            "service@contoso.test",
            Protocols::parse_list("pop3").unwrap(),
            false,
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
}

#[test]
fn freshness_rule_is_min_five_minutes_or_half_the_lifetime() {
    use mailoauth::cache::AccessToken;
    use mailoauth::secret::Secret;
    use mailoauth::tokens::is_fresh;
    let at = |issued: i64, expires: i64| AccessToken {
        token: Secret::new("t"),
        issued_at: issued,
        expires_at: expires,
        protocols: Protocols::ALL,
    };
    // One hour: fresh until 5 minutes are left.
    assert!(is_fresh(&at(0, 3600), 3300));
    assert!(!is_fresh(&at(0, 3600), 3301));
    // Twenty seconds: fresh until 10 seconds are left.
    assert!(is_fresh(&at(0, 20), 10));
    assert!(!is_fresh(&at(0, 20), 11));
    assert!(!is_fresh(&at(0, 20), 25));
}

#[test]
fn closing_the_context_cancels_its_running_consents() {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    let ctx = context(&idp, dir.path(), "none");
    let op = ctx
        .consent_begin(r#"{"account":"alice@contoso.test","flow":"browser"}"#)
        .unwrap();
    let url = op.info()["authorize_url"].as_str().unwrap().to_string();
    ctx.close();
    let location = authorize_redirect(&url);
    let (port, path) = split_url(&location);
    // The listener is gone with the consent: the browser cannot land.
    let landed = try_http_request("GET", port, &path, None, &[]);
    assert!(landed.is_err(), "the listener still answered");
    let r = op.wait(Duration::from_secs(10)).expect("finished");
    assert_eq!(r.unwrap_err().kind, ErrorKind::Cancelled);
    assert_eq!(counter(&idp, "authorization_code"), 0);
}

#[test]
fn a_slow_identity_provider_times_out_or_is_cancelled_and_the_grant_survives() {
    // Microsoft's rotation: a refresh abandoned by timeout or cancel may
    // still have been redeemed by the server, and the old refresh token stays
    // valid there (under strict single-use rotation that would lose the
    // grant by nature).
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tmp();
    // A one-second HTTP timeout for this context.
    let json = idp.config_json(json!({
        "cache": {"path": dir.path().to_string_lossy(), "protection": "none"},
        "http": {"proxy": "none", "timeout_ms": 1000}
    }));
    let ctx = Arc::new(Context::new(parse_config(&json)).unwrap());
    consent(&ctx, ALICE, &["imap"]);
    let imap = Protocols::parse_list("imap").unwrap();
    // Slower than the timeout: a clean, transient failure (after retries).
    idp.post("/admin/latency", &json!({"endpoint": "token", "ms": 1500}));
    let e = ctx.token_get(ALICE, imap, true).unwrap_err();
    assert!(e.transient, "{e:?}");
    assert!(
        matches!(e.kind, ErrorKind::Network | ErrorKind::Timeout),
        "{e:?}"
    );
    // Cancelled from another thread while a refresh waits on the provider.
    let c2 = ctx.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let e = ctx.token_get(ALICE, imap, true).unwrap_err();
    canceller.join().unwrap();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e:?}");
    // Slow but within the timeout: works, and the grant survived all of it.
    idp.post("/admin/latency", &json!({"endpoint": "token", "ms": 200}));
    ctx.token_get(ALICE, imap, true).unwrap();
    idp.post("/admin/latency", &json!({"endpoint": "token", "ms": 0}));
    let other = context(&idp, dir.path(), "none");
    other.token_get(ALICE, imap, true).unwrap();
}
