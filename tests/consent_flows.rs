//! The consent flows against the local identity imitation: the browser flow
//! driven by a plain HTTP client (authorize URL → 302 → our loopback
//! listener), the device flow approved/denied/expired through the admin API,
//! the app flow over TLS, cancel, timeout, parallel consents, account
//! mismatch, and that no secret leaks into an error.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mailoauth::auth::OAuthClient;
use mailoauth::consent::{self, ConsentOp, ConsentRequest, ConsentState};
use mailoauth::error::{Error, ErrorKind};
use serde_json::{Value, json};
use support::*;

struct Env {
    idp: Idp,
    rt: tokio::runtime::Runtime,
    client: Arc<OAuthClient>,
    config: Arc<mailoauth::Config>,
}

impl Env {
    fn new(extra: Value) -> Env {
        let idp = Idp::start();
        let config = idp.config(extra);
        Self::with(idp, config)
    }

    fn app() -> Env {
        let idp = Idp::start();
        let config = idp.app_config(json!({}));
        Self::with(idp, config)
    }

    fn with(idp: Idp, config: mailoauth::Config) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = Arc::new(OAuthClient::new(&config).unwrap());
        Env {
            idp,
            rt,
            client,
            config: Arc::new(config),
        }
    }

    fn begin(&self, request: &str) -> Result<Arc<ConsentOp>, Error> {
        let req = ConsentRequest::parse(request, &self.config)?;
        consent::begin(
            self.client.clone(),
            self.config.clone(),
            self.rt.handle(),
            req,
        )
    }
}

fn state(op: &ConsentOp) -> String {
    op.info()["state"].as_str().unwrap_or("").to_string()
}

fn authorize_url(op: &ConsentOp) -> String {
    op.info()["authorize_url"]
        .as_str()
        .expect("authorize_url in info")
        .to_string()
}

fn listener_port(authorize_url: &str) -> u16 {
    let url = url::Url::parse(authorize_url).unwrap();
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned())
        .expect("redirect_uri");
    assert!(
        redirect.starts_with("http://localhost:") && redirect.ends_with('/'),
        "{redirect}"
    );
    url::Url::parse(&redirect).unwrap().port().expect("a port")
}

fn port_closed(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn browser_flow_end_to_end() {
    let env = Env::new(json!({}));
    env.idp.settings(json!({"auto_consent": true}));
    let op = env
        .begin(r#"{"account": "Alice@Contoso.test", "prompt": "select_account", "timeout_s": 60}"#)
        .unwrap();
    assert_eq!(state(&op), "waiting_for_user");
    let info = op.info();
    assert!(info["expires_at"].as_i64().unwrap() > mailoauth::auth::now());
    let url = authorize_url(&op);
    let q: std::collections::HashMap<String, String> = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["login_hint"], "Alice@Contoso.test");
    assert_eq!(q["prompt"], "select_account");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["response_mode"], "query");
    let port = listener_port(&url);

    let location = authorize_redirect(&url);
    let page = follow_to_listener(&location);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sign-in complete"), "{}", page.body);

    let outcome = op
        .wait(Duration::from_secs(20))
        .expect("finished")
        .unwrap_or_else(|e| panic!("consent failed: {}", e.message.en));
    assert_eq!(
        outcome.account, "Alice@Contoso.test",
        "the request's account, as given"
    );
    assert_eq!(outcome.username(), Some(ALICE));
    assert!(!outcome.app);
    assert_eq!(outcome.protocols, mailoauth::protocol::Protocols::ALL);
    assert!(outcome.tokens.refresh_token.is_some());
    let result = outcome.result_json();
    assert_eq!(result["tenant_id"], TENANT);
    assert!(result.get("access_token").is_none());
    assert!(
        !result
            .to_string()
            .contains(outcome.tokens.access_token.expose())
    );

    // The owner stores it, then finishes the op.
    assert_eq!(state(&op), "exchanging");
    assert!(op.finish(Ok(())));
    assert_eq!(state(&op), "done");
    assert!(
        op.wait(Duration::ZERO).unwrap().is_ok(),
        "a clone each time"
    );
    op.cancel();
    assert_eq!(state(&op), "done");
    assert!(port_closed(port), "the listener closes when the flow ends");
}

#[test]
fn forged_state_and_other_requests_get_404_and_the_op_keeps_waiting() {
    let env = Env::new(json!({"language": "de"}));
    env.idp.settings(json!({"auto_consent": true}));
    let op = env
        .begin(r#"{"protocols": ["imap"], "timeout_s": 60}"#)
        .unwrap();
    let url = authorize_url(&op);
    let port = listener_port(&url);
    for path in [
        "/?code=forged-code-0123456789&state=forged",
        "/?code=forged-code-0123456789",
        "/favicon.ico",
        "/",
        "/other?code=x&state=y",
    ] {
        let r = http_request("GET", port, path, None, &[]);
        assert_eq!(r.status, 404, "{path}");
    }
    // A connection that sends nothing does not block the listener.
    let _idle = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(op.wait(Duration::from_millis(300)).is_none());
    assert_eq!(state(&op), "waiting_for_user");

    let page = follow_to_listener(&authorize_redirect(&url));
    assert!(
        page.body.contains("Anmeldung abgeschlossen"),
        "German page: {}",
        page.body
    );
    let outcome = op.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(
        outcome.account, ALICE,
        "no account given: preferred_username"
    );
    assert_eq!(outcome.protocols.names(), vec!["imap"]);
}

#[test]
fn access_denied_is_declined() {
    let env = Env::new(json!({}));
    let op = env.begin(r#"{"account": "alice@contoso.test"}"#).unwrap();
    let location = authorize_decide(&authorize_url(&op), false, None);
    let page = follow_to_listener(&location);
    assert!(page.body.contains("Sign-in failed"), "{}", page.body);
    let e = op.wait(Duration::from_secs(20)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Declined);
    assert_eq!(e.provider_error.as_deref(), Some("access_denied"));
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS65004"));
    assert!(e.hint.is_some());
    assert_eq!(state(&op), "failed");
    assert!(!op.finish(Ok(())), "nothing to finish");
    assert_no_secrets(&env.idp, &[&e]);
}

#[test]
fn account_mismatch_in_the_browser() {
    let env = Env::new(json!({}));
    let op = env.begin(r#"{"account": "alice@contoso.test"}"#).unwrap();
    let location = authorize_decide(&authorize_url(&op), true, Some(BOB));
    let page = follow_to_listener(&location);
    assert!(page.body.contains("Sign-in failed"));
    let e = op.wait(Duration::from_secs(20)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccountMismatch);
    assert!(
        e.message.en.contains(ALICE) && e.message.en.contains(BOB),
        "{}",
        e.message.en
    );
    assert!(e.message.de.contains(ALICE) && e.message.de.contains(BOB));
    assert_no_secrets(&env.idp, &[&e]);
}

#[test]
fn cancel_from_another_thread_ends_promptly_and_closes_the_listener() {
    let env = Env::new(json!({}));
    let op = env.begin(r#"{"timeout_s": 600}"#).unwrap();
    let port = listener_port(&authorize_url(&op));
    let waiter = {
        let op = op.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = op.wait(Duration::from_secs(60));
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let canceller = {
        let op = op.clone();
        std::thread::spawn(move || op.cancel())
    };
    canceller.join().unwrap();
    let (r, took) = waiter.join().unwrap();
    let e = r.expect("finished").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Cancelled);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(state(&op), "cancelled");
    op.cancel();
    assert_eq!(state(&op), "cancelled");
    assert!(port_closed(port));
}

#[test]
fn timeout_ends_the_flow() {
    let env = Env::new(json!({}));
    let op = env.begin(r#"{"timeout_s": 1}"#).unwrap();
    let port = listener_port(&authorize_url(&op));
    let started = Instant::now();
    let e = op.wait(Duration::from_secs(10)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(state(&op), "failed");
    assert!(port_closed(port));
}

#[test]
fn two_consents_at_once_do_not_clash() {
    let env = Env::new(json!({}));
    env.idp.settings(json!({"auto_consent": true}));
    let a = env
        .begin(r#"{"account": "alice@contoso.test", "protocols": ["smtp"]}"#)
        .unwrap();
    let b = env
        .begin(r#"{"account": "bob@contoso.test", "protocols": ["pop3"]}"#)
        .unwrap();
    let (ua, ub) = (authorize_url(&a), authorize_url(&b));
    assert_ne!(listener_port(&ua), listener_port(&ub));
    // Finish them in the other order.
    assert_eq!(follow_to_listener(&authorize_redirect(&ub)).status, 200);
    assert!(a.wait(Duration::from_millis(100)).is_none());
    assert_eq!(follow_to_listener(&authorize_redirect(&ua)).status, 200);
    let oa = a.wait(Duration::from_secs(20)).unwrap().unwrap();
    let ob = b.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!((oa.account.as_str(), oa.username()), (ALICE, Some(ALICE)));
    assert_eq!((ob.account.as_str(), ob.username()), (BOB, Some(BOB)));
    assert_eq!(oa.protocols.names(), vec!["smtp"]);
    assert_eq!(ob.protocols.names(), vec!["pop3"]);
}

#[test]
fn a_fixed_redirect_port_in_use_is_refused_at_begin() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let env = Env::new(json!({"redirect": {"port": port}}));
    let e = env.begin("{}").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidState);
    assert!(e.hint.is_some());
}

fn device_env() -> Env {
    let env = Env::new(json!({}));
    env.idp.settings(json!({"device_interval_s": 1}));
    env
}

fn user_code(op: &ConsentOp) -> String {
    eventually(Duration::from_secs(10), || {
        op.info()["user_code"].as_str().map(str::to_string)
    })
}

#[test]
fn device_flow_approved() {
    let env = device_env();
    let op = env
        .begin(r#"{"flow": "device", "protocols": ["imap", "smtp"]}"#)
        .unwrap();
    let code = user_code(&op);
    let info = op.info();
    assert_eq!(info["state"], "waiting_for_user");
    assert!(
        info["verification_uri"]
            .as_str()
            .unwrap()
            .contains("/devicelogin")
    );
    assert!(info["message"].as_str().unwrap().contains(&code));
    assert!(info["expires_at"].as_i64().unwrap() > mailoauth::auth::now());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        op.wait(Duration::ZERO).is_none(),
        "pending polls are not errors"
    );
    env.idp.approve_device(&code, Some(BOB));
    let outcome = op.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(outcome.account, BOB);
    assert!(outcome.tokens.refresh_token.is_some());
    assert_eq!(outcome.protocols.names(), vec!["smtp", "imap"]);
    assert_eq!(state(&op), "exchanging");
}

#[test]
fn device_flow_denied() {
    let env = device_env();
    let op = env.begin(r#"{"flow": "device"}"#).unwrap();
    let code = user_code(&op);
    env.idp.deny_device(&code);
    let e = op.wait(Duration::from_secs(20)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Declined);
    assert_eq!(e.provider_error.as_deref(), Some("authorization_declined"));
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS70000"));
    assert!(e.correlation_id.is_some());
    assert_no_secrets(&env.idp, &[&e]);
}

#[test]
fn device_flow_expired() {
    let env = device_env();
    env.idp.settings(json!({"device_code_lifetime_s": 2}));
    let op = env.begin(r#"{"flow": "device"}"#).unwrap();
    user_code(&op);
    let e = op.wait(Duration::from_secs(20)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert_no_secrets(&env.idp, &[&e]);
}

#[test]
fn device_flow_account_mismatch_and_accept_other_account() {
    let env = device_env();
    let op = env
        .begin(r#"{"flow": "device", "account": "alice@contoso.test"}"#)
        .unwrap();
    env.idp.approve_device(&user_code(&op), Some(BOB));
    let e = op.wait(Duration::from_secs(20)).unwrap().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccountMismatch);

    let op = env
        .begin(
            r#"{"flow": "device", "account": "shared@contoso.test", "accept_other_account": true}"#,
        )
        .unwrap();
    env.idp.approve_device(&user_code(&op), Some(ALICE));
    let outcome = op.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(outcome.account, "shared@contoso.test");
    assert_eq!(outcome.username(), Some(ALICE));
    assert_no_secrets(&env.idp, &[&e]);
}

#[test]
fn app_flow_without_a_user() {
    let env = Env::app();
    let op = env
        .begin(
            r#"{"flow": "app", "account": "service@contoso.test", "protocols": ["imap", "pop3"]}"#,
        )
        .unwrap();
    let outcome = op.wait(Duration::from_secs(20)).unwrap().unwrap();
    assert!(outcome.app);
    assert_eq!(outcome.account, SERVICE_MAILBOX);
    assert_eq!(outcome.protocols.names(), vec!["imap", "pop3"]);
    assert!(outcome.tokens.refresh_token.is_none());
    assert!(outcome.tokens.scopes.iter().any(|s| s == APP_SCOPE));
    let stored = op.settle(Duration::ZERO, |_| Ok(())).unwrap();
    assert!(stored.is_ok());
    assert_eq!(op.state(), ConsentState::Done);

    // Needs an account and a secret.
    assert_eq!(
        env.begin(r#"{"flow": "app"}"#).unwrap_err().kind,
        ErrorKind::InvalidConfig
    );
    let public = Env::new(json!({}));
    let e = public
        .begin(r#"{"flow": "app", "account": "service@contoso.test"}"#)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
}

#[test]
fn request_errors_at_begin() {
    let env = Env::new(json!({}));
    let e = env
        .begin(r#"{"flow": "browser", "acount": "x"}"#)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    assert!(e.message.en.contains("acount"));
    let e = env
        .begin("{\"account\": \"a@b\\r\\nRCPT TO:<x>\"}")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
}
