//! The account test ("Test settings") against the local stack: every step
//! passing, then each step failing in turn (no grant, a dead grant, SMTP at
//! a closed port or with the wrong security, IMAP and POP3 likewise, a
//! token without the IMAP scope) while the other steps still run and pass;
//! cancelling a test that hangs on a silent server.
//!
//! Tokens are minted by the identity imitation and put into a cache of the
//! test's own. Nothing here sends mail or changes a mailbox.

mod smtp_common;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailoauth::Context;
use mailoauth::account_test::{self, Step, StepKind, TestRequest, TestState};
use mailoauth::error::ErrorKind;
use mailoauth::i18n::Language;
use mailoauth::protocol::Protocols;
use mailoauth::secret::Secret;
use serde_json::{Value, json};
use smtp_common::{IMAP_SCOPE, POP_SCOPE, SMTP_SCOPE, Stack};

const USER: &str = "carol@contoso.test";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The stack's servers: `over` replaces single protocols
/// (`{"smtp": {"port": 1}}` is merged into the SMTP server).
fn servers(st: &Stack, over: Value) -> Value {
    let host = st.smtp_host();
    let mut v = json!({
        "smtp": {"host": host, "port": st.v["smtp"]["starttls"], "security": "starttls"},
        "imap": {"host": host, "port": st.v["imap"]["tls"], "security": "tls"},
        "pop3": {"host": host, "port": st.v["pop3"]["starttls"], "security": "starttls"},
    });
    if let Value::Object(o) = over {
        for (proto, patch) in o {
            if let (Some(Value::Object(s)), Value::Object(p)) = (v.get_mut(&proto), patch) {
                for (k, x) in p {
                    s.insert(k, x);
                }
            }
        }
    }
    v
}

fn context(st: &Stack, cache: &Path, over: Value, language: &str) -> Arc<Context> {
    let json = json!({
        "provider": "custom",
        "authority": st.idp_http(),
        "allow_plaintext_loopback": true,
        "tenant": st.v["idp"]["tenant"],
        "client_id": st.v["idp"]["client_id"],
        "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE},
        "servers": servers(st, over),
        "browser": "none",
        "language": language,
        "tls": {"ca_file": st.ca_file()},
        "http": {"proxy": "none", "timeout_ms": 10000},
        "cache": {"path": cache.to_string_lossy(), "protection": "none"},
    });
    let cfg = mailoauth::config::parse(&json.to_string()).unwrap().config;
    Arc::new(Context::new(cfg).unwrap())
}

/// Puts a grant for `USER` into the cache: a minted access token with
/// `scopes` (the grant claims all three protocols), or, with no scopes, an
/// expired access token and a refresh token the provider does not know.
fn seed(st: &Stack, cache: &Path, scopes: &[&str]) -> Option<Secret> {
    if scopes.is_empty() {
        // An expired access token and a refresh token the provider never issued.
        support::save_grant(
            cache,
            USER,
            Secret::new("expired-access-token-0123456789"),
            -3600,
            Some(Secret::new("refresh-token-the-provider-never-issued")),
        );
        None
    } else {
        let token = st.mint(USER, scopes);
        support::save_grant(cache, USER, token.clone(), 3000, None);
        Some(token)
    }
}

const ALL_SCOPES: [&str; 3] = [SMTP_SCOPE, IMAP_SCOPE, POP_SCOPE];

fn request() -> TestRequest {
    TestRequest {
        account: USER.into(),
        protocols: Protocols::ALL,
        step_timeout: Duration::from_secs(20),
    }
}

fn run(ctx: &Context) -> Vec<Step> {
    let steps = account_test::run(ctx, &request(), |_| {}).unwrap();
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        vec![
            StepKind::Token,
            StepKind::Smtp,
            StepKind::Imap,
            StepKind::Pop3
        ]
    );
    steps
}

fn step(steps: &[Step], kind: StepKind) -> &Step {
    steps.iter().find(|s| s.kind == kind).unwrap()
}

fn kind_of(steps: &[Step], kind: StepKind) -> Option<ErrorKind> {
    step(steps, kind).outcome.as_ref().err().map(|e| e.kind)
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn every_step_passes_in_the_background_and_the_result_holds_no_secret() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let token = seed(&st, dir.path(), &ALL_SCOPES).unwrap();
    let ctx = context(&st, dir.path(), json!({}), "en");
    let op = account_test::begin(&ctx, &json!({"account": USER}).to_string()).unwrap();
    let steps = op
        .wait(Duration::from_secs(60))
        .expect("the test finishes")
        .unwrap();
    assert_eq!(op.state(), TestState::Done);
    assert_eq!(steps.len(), 4);
    for s in &steps {
        assert!(s.is_ok(), "{:?}: {:?}", s.kind, s.outcome);
    }
    let tok = step(&steps, StepKind::Token).outcome.as_ref().unwrap();
    assert!(tok.expires_at.is_some_and(|t| t > now()));
    let imap = step(&steps, StepKind::Imap).outcome.as_ref().unwrap();
    assert!(imap.message.en.contains("INBOX"), "{}", imap.message.en);
    let pop = step(&steps, StepKind::Pop3).outcome.as_ref().unwrap();
    assert!(
        pop.server_reply
            .as_deref()
            .is_some_and(|r| r.starts_with("+OK ")),
        "{:?}",
        pop.server_reply
    );
    let json = mailoauth::ffi::account_test::result_json(&steps, Language::En).to_string();
    assert!(!json.contains(token.expose()));
    let v: Value = serde_json::from_str(&json).unwrap();
    for s in v["steps"].as_array().unwrap() {
        assert_eq!(s["code"], 0);
        assert_eq!(s["name"], "OK");
        assert!(s["ms"].is_u64());
        assert!(s["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Only the steps asked for run.
    let op = account_test::begin(
        &ctx,
        &json!({"account": USER, "protocols": ["pop3"]}).to_string(),
    )
    .unwrap();
    let steps = op.wait(Duration::from_secs(60)).unwrap().unwrap();
    let kinds: Vec<StepKind> = steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, vec![StepKind::Token, StepKind::Pop3]);
}

#[test]
fn without_a_grant_every_step_reports_consent_required() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&st, dir.path(), json!({}), "de");
    let steps = run(&ctx);
    for s in &steps {
        assert_eq!(
            s.outcome.as_ref().err().map(|e| e.kind),
            Some(ErrorKind::ConsentRequired),
            "{:?}",
            s.kind
        );
    }
}

#[test]
fn a_dead_refresh_token_is_consent_required_with_the_providers_code() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &[]);
    let ctx = context(&st, dir.path(), json!({}), "en");
    let steps = run(&ctx);
    let e = step(&steps, StepKind::Token).outcome.as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert!(
        e.provider_code
            .as_deref()
            .is_some_and(|c| c.starts_with("AADSTS"))
    );
    // The protocol steps still ran and report their own failure.
    for k in [StepKind::Smtp, StepKind::Imap, StepKind::Pop3] {
        assert_eq!(kind_of(&steps, k), Some(ErrorKind::ConsentRequired));
    }
}

#[test]
fn smtp_at_a_closed_port_fails_alone() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &ALL_SCOPES);
    let ctx = context(
        &st,
        dir.path(),
        json!({"smtp": {"port": closed_port()}}),
        "en",
    );
    let steps = run(&ctx);
    assert_eq!(kind_of(&steps, StepKind::Smtp), Some(ErrorKind::Network));
    for k in [StepKind::Token, StepKind::Imap, StepKind::Pop3] {
        assert!(
            step(&steps, k).is_ok(),
            "{k:?}: {:?}",
            step(&steps, k).outcome
        );
    }
}

#[test]
fn smtp_with_implicit_tls_on_the_starttls_port_is_a_tls_failure() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &ALL_SCOPES);
    let ctx = context(&st, dir.path(), json!({"smtp": {"security": "tls"}}), "en");
    let steps = run(&ctx);
    assert_eq!(kind_of(&steps, StepKind::Smtp), Some(ErrorKind::Tls));
    let e = step(&steps, StepKind::Smtp).outcome.as_ref().unwrap_err();
    assert!(e.hint.is_some());
    assert!(step(&steps, StepKind::Imap).is_ok());
    assert!(step(&steps, StepKind::Pop3).is_ok());
}

#[test]
fn imap_at_a_closed_port_and_pop3_with_the_wrong_security_fail_while_smtp_passes() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &ALL_SCOPES);
    let ctx = context(
        &st,
        dir.path(),
        json!({"imap": {"port": closed_port()}, "pop3": {"security": "tls"}}),
        "en",
    );
    let steps = run(&ctx);
    assert_eq!(kind_of(&steps, StepKind::Imap), Some(ErrorKind::Network));
    assert_eq!(kind_of(&steps, StepKind::Pop3), Some(ErrorKind::Tls));
    // Every failed server step tells the administrator what to check.
    for k in [StepKind::Imap, StepKind::Pop3] {
        let e = step(&steps, k).outcome.as_ref().unwrap_err();
        let hint = e.hint.as_ref().expect("a hint");
        assert!(
            hint.en.contains(&format!("servers.{}", k.as_str())),
            "{}",
            hint.en
        );
    }
    assert!(step(&steps, StepKind::Token).is_ok());
    assert!(step(&steps, StepKind::Smtp).is_ok());
}

#[test]
fn a_token_without_the_imap_scope_fails_imap_only_with_a_hint() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &[SMTP_SCOPE, POP_SCOPE]);
    let ctx = context(&st, dir.path(), json!({}), "de");
    let steps = run(&ctx);
    let e = step(&steps, StepKind::Imap).outcome.as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    let hint = e.hint.as_ref().expect("a hint for the administrator");
    assert!(hint.de.contains("IMAP.AccessAsUser.All"), "{}", hint.de);
    assert!(e.server_reply.is_some());
    assert!(step(&steps, StepKind::Smtp).is_ok());
    assert!(step(&steps, StepKind::Pop3).is_ok());
    // The rendered step is German, with code, name and hint.
    let v = mailoauth::ffi::account_test::step_json(step(&steps, StepKind::Imap), Language::De);
    assert_eq!(v["code"], 303);
    assert_eq!(v["name"], "AUTH_REJECTED");
    assert!(
        v["hint"]
            .as_str()
            .is_some_and(|h| h.contains("Übliche Ursachen"))
    );
}

#[test]
fn cancelling_a_test_stuck_on_a_silent_server_ends_it_cancelled() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &ALL_SCOPES);
    // Accepts and never greets.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let ctx = context(
        &st,
        dir.path(),
        json!({"smtp": {"host": "127.0.0.1", "port": port}}),
        "en",
    );
    let op = account_test::begin(
        &ctx,
        &json!({"account": USER, "protocols": ["smtp"], "timeout_ms": 600_000}).to_string(),
    )
    .unwrap();
    // Wait until the token step is done and the SMTP step hangs.
    let (_conn, _) = silent.accept().unwrap();
    assert!(op.wait(Duration::ZERO).is_none());
    assert_eq!(op.state(), TestState::Running);
    op.cancel();
    let r = op
        .wait(Duration::from_secs(30))
        .expect("ends promptly after cancel");
    assert_eq!(r.unwrap_err().kind, ErrorKind::Cancelled);
    assert_eq!(op.state(), TestState::Cancelled);
    // The steps done so far: the token, and the SMTP step it cut short.
    let done = op.steps();
    assert_eq!(done.len(), 2);
    assert!(done[0].is_ok());
    assert_eq!(kind_of(&done, StepKind::Smtp), Some(ErrorKind::Cancelled));
}

#[test]
fn a_context_cancel_reaches_a_mailbox_step() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    seed(&st, dir.path(), &ALL_SCOPES);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let ctx = context(
        &st,
        dir.path(),
        json!({"imap": {"host": "127.0.0.1", "port": port}}),
        "en",
    );
    let op = account_test::begin(
        &ctx,
        &json!({"account": USER, "protocols": ["imap"], "timeout_ms": 600_000}).to_string(),
    )
    .unwrap();
    let (_conn, _) = silent.accept().unwrap();
    ctx.cancel();
    let steps = op
        .wait(Duration::from_secs(30))
        .expect("ends promptly after the context's cancel")
        .unwrap();
    assert_eq!(kind_of(&steps, StepKind::Imap), Some(ErrorKind::Cancelled));
}

/// A scripted server on 127.0.0.1 (plaintext: the loopback test rule)
/// that answers like Exchange Online; one connection, then it ends.
/// `answer(line, last_tag)` gives the reply to a client line (None: close).
fn fake_server(
    greeting: &'static str,
    answer: fn(&str, &str) -> Option<String>,
) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let mut w = s.try_clone().unwrap();
        let _ = w.write_all(greeting.as_bytes());
        let mut tag = String::new();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            let first = line.split(' ').next().unwrap_or("").to_string();
            if line.contains(' ') && !first.is_empty() {
                tag = first;
            }
            match answer(&line, &tag) {
                Some(r) => {
                    if w.write_all(r.as_bytes()).is_err() {
                        return;
                    }
                }
                None => return,
            }
        }
    });
    (port, t)
}

fn exchange_smtp(line: &str, _: &str) -> Option<String> {
    let u = line.to_ascii_uppercase();
    Some(if u.starts_with("EHLO") {
        "250-outlook.office365.com Hello\r\n250-SIZE 157286400\r\n250 AUTH LOGIN XOAUTH2\r\n".into()
    } else if u.starts_with("AUTH") {
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n".into()
    } else if u.starts_with("QUIT") {
        "221 2.0.0 Service closing transmission channel\r\n".into()
    } else {
        "500 5.3.3 Unrecognized command\r\n".into()
    })
}

fn exchange_imap(line: &str, tag: &str) -> Option<String> {
    let u = line.to_ascii_uppercase();
    Some(if u.contains(" CAPABILITY") {
        format!(
            "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+\r\n{tag} OK CAPABILITY completed.\r\n"
        )
    } else if u.contains(" AUTHENTICATE ") {
        "+ \r\n".into()
    } else if u.contains(" SELECT ") || u.contains(" EXAMINE ") {
        format!("{tag} BAD User is authenticated but not connected.\r\n")
    } else if u.contains(" LOGOUT") {
        format!("* BYE\r\n{tag} OK LOGOUT completed.\r\n")
    } else if !line.contains(' ') {
        // The SASL response.
        format!("{tag} OK AUTHENTICATE completed.\r\n")
    } else {
        format!("{tag} BAD Command Error. 12\r\n")
    })
}

fn exchange_pop3(line: &str, _: &str) -> Option<String> {
    let u = line.to_ascii_uppercase();
    Some(if u.starts_with("CAPA") {
        "+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n".into()
    } else if u.starts_with("AUTH") {
        "+ \r\n".into()
    } else if u.starts_with("STAT") {
        "-ERR User is authenticated but not connected.\r\n".into()
    } else if u.starts_with("QUIT") {
        "+OK Microsoft Exchange Server POP3 server signing off.\r\n".into()
    } else if !line.contains(' ') {
        "+OK User successfully authenticated.\r\n".into()
    } else {
        "-ERR Command is not valid in this state.\r\n".into()
    })
}

/// Exchange Online's refusals come back with the hints the SMTP and
/// mailbox code already has for them (needs no stack: the token is a
/// cached one, the servers are scripted).
#[test]
fn exchange_refusals_carry_the_administrators_fix() {
    let dir = tempfile::tempdir().unwrap();
    support::save_grant(
        dir.path(),
        USER,
        Secret::new("cached-access-token-for-the-scripted-servers"),
        3000,
        None,
    );
    let (smtp, s1) = fake_server(
        "220 outlook.office365.com Microsoft ESMTP MAIL Service ready\r\n",
        exchange_smtp,
    );
    let (imap, s2) = fake_server(
        "* OK The Microsoft Exchange IMAP4 service is ready.\r\n",
        exchange_imap,
    );
    let (pop3, s3) = fake_server(
        "+OK The Microsoft Exchange POP3 service is ready.\r\n",
        exchange_pop3,
    );
    let server = |port: u16| json!({"host": "127.0.0.1", "port": port, "security": "none"});
    let json = json!({
        "provider": "custom",
        "authority": "http://127.0.0.1:9",
        "allow_plaintext_loopback": true,
        "tenant": "contoso.test",
        "client_id": "00000000-0000-0000-0000-0000000000a1",
        "scopes": {"smtp": SMTP_SCOPE, "imap": IMAP_SCOPE, "pop3": POP_SCOPE},
        "servers": {"smtp": server(smtp), "imap": server(imap), "pop3": server(pop3)},
        "language": "de",
        "cache": {"path": dir.path().to_string_lossy(), "protection": "none"},
    });
    let cfg = mailoauth::config::parse(&json.to_string()).unwrap().config;
    let ctx = Arc::new(Context::new(cfg).unwrap());
    let steps = run(&ctx);
    assert!(step(&steps, StepKind::Token).is_ok());
    let e = step(&steps, StepKind::Smtp).outcome.as_ref().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    assert!(
        e.server_reply
            .as_deref()
            .is_some_and(|r| r.starts_with("535 5.7.139"))
    );
    assert!(
        e.hint
            .as_ref()
            .unwrap()
            .de
            .contains("SmtpClientAuthenticationDisabled $false")
    );
    for k in [StepKind::Imap, StepKind::Pop3] {
        let e = step(&steps, k).outcome.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::MailboxAccessDenied, "{k:?}: {e:?}");
        assert!(
            e.server_reply
                .as_deref()
                .is_some_and(|r| r.contains("User is authenticated but not connected")),
            "{k:?}: {e:?}"
        );
        assert!(e.hint.as_ref().unwrap().de.contains("FullAccess"), "{k:?}");
    }
    let v = mailoauth::ffi::account_test::result_json(&steps, Language::De);
    assert_eq!(v["steps"][1]["code"], 303);
    assert_eq!(v["steps"][2]["name"], "MAILBOX_ACCESS_DENIED");
    assert_eq!(v["steps"][3]["name"], "MAILBOX_ACCESS_DENIED");
    for s in [s1, s2, s3] {
        s.join().unwrap();
    }
}

/// The servers reject the cached access token (revoked at the provider) and
/// the provider refuses the refresh token: as a real send or poll would, the
/// step refreshes once, and reports the provider's refusal (sign in again)
/// rather than the server's rejection.
#[test]
fn a_revoked_grant_is_reported_as_consent_required_after_one_forced_refresh() {
    let Some(st) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    support::save_grant(
        dir.path(),
        USER,
        Secret::new("access-token-the-provider-revoked-0123456789"),
        3000,
        Some(Secret::new("refresh-token-the-provider-revoked")),
    );
    let ctx = context(&st, dir.path(), json!({}), "en");
    let steps = run(&ctx);
    // The cache alone cannot know: the token step passes.
    assert!(step(&steps, StepKind::Token).is_ok());
    for k in [StepKind::Smtp, StepKind::Imap, StepKind::Pop3] {
        let e = step(&steps, k).outcome.as_ref().unwrap_err();
        assert_eq!(e.kind, ErrorKind::ConsentRequired, "{k:?}: {e:?}");
        assert!(
            e.provider_code
                .as_deref()
                .is_some_and(|c| c.starts_with("AADSTS")),
            "{k:?}: {e:?}"
        );
    }
}
