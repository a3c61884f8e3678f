//! The OAuth client against the local identity imitation: code exchange,
//! refresh with rotation, retries of transient failures (counted by the
//! imitation), error mapping with AADSTS codes, correlation ids and hints,
//! TLS with extra roots, and that no secret leaks into an error.

mod support;

use std::time::{Duration, Instant};

use mailoauth::auth::{DevicePoll, OAuthClient, TokenSet, delegated_scopes, pkce_pair};
use mailoauth::error::ErrorKind;
use mailoauth::protocol::Protocols;
use mailoauth::secret::Secret;
use serde_json::{Value, json};
use support::*;

fn code_from(location: &str) -> String {
    let url = url::Url::parse(location).expect("location URL");
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| {
            panic!(
                "no code in the redirect (error: {:?})",
                url.query_pairs().find(|(k, _)| k == "error")
            )
        })
}

/// Signs `user` in through the imitation's auto-consent and redeems the code.
async fn sign_in(
    idp: &Idp,
    client: &OAuthClient,
    config: &mailoauth::Config,
    user: &str,
) -> TokenSet {
    idp.settings(json!({"auto_consent": true}));
    let scopes = delegated_scopes(config, Protocols::ALL).unwrap();
    let (verifier, challenge) = pkce_pair();
    let redirect = "http://localhost:4711/";
    let url = client
        .authorize_url(&scopes, redirect, "state-1", &challenge, None, Some(user))
        .unwrap();
    let code = code_from(&authorize_redirect(&url));
    client
        .exchange_code(&Secret::new(code), &verifier, redirect, &scopes)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {}", e.message.en))
}

fn token_errors(idp: &Idp) -> u64 {
    idp.counters()["token"]["errors"].as_u64().unwrap_or(0)
}

fn refreshes(idp: &Idp) -> u64 {
    idp.counters()["token"]["refresh_token"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn code_exchange_and_refresh_with_rotation() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = sign_in(&idp, &client, &config, ALICE).await;
    let rt1 = t.refresh_token.clone().expect("a refresh token");
    let id = t.id.clone().expect("id claims");
    assert_eq!(id.preferred_username.as_deref(), Some(ALICE));
    assert_eq!(id.tid.as_deref(), Some(TENANT));
    assert!(t.expires_at > t.issued_at && t.issued_at > 1_700_000_000);
    for s in [SMTP_SCOPE, IMAP_SCOPE, POP_SCOPE] {
        assert!(
            t.scopes.iter().any(|x| x == s),
            "scope {s} missing in {:?}",
            t.scopes
        );
    }

    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();
    let t2 = client.refresh(&rt1, &scopes).await.unwrap();
    let rt2 = t2.refresh_token.clone().expect("a rotated refresh token");
    assert_ne!(rt1.expose(), rt2.expose(), "the refresh token must rotate");
    assert_ne!(t.access_token.expose(), t2.access_token.expose());
    assert_eq!(
        t2.id.as_ref().and_then(|c| c.preferred_username.as_deref()),
        Some(ALICE)
    );

    // Microsoft rotation: the old one still works; strict: it is dead.
    client.refresh(&rt1, &scopes).await.unwrap();
    idp.settings(json!({"rotation": "strict"}));
    let t3 = client.refresh(&rt2, &scopes).await.unwrap();
    let e = client.refresh(&rt2, &scopes).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS70000"));
    assert!(!e.transient);
    client
        .refresh(t3.refresh_token.as_ref().unwrap(), &scopes)
        .await
        .unwrap();
    assert_no_secrets(&idp, &[&e]);
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_503_is_retried_inside_the_client() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = sign_in(&idp, &client, &config, ALICE).await;
    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();
    let (errors0, ok0) = (token_errors(&idp), refreshes(&idp));
    idp.fail(json!({"endpoint": "token", "count": 2, "status": 503}));
    let started = Instant::now();
    client
        .refresh(t.refresh_token.as_ref().unwrap(), &scopes)
        .await
        .expect("retried to success");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "0.5 s + 1 s backoff"
    );
    assert_eq!(token_errors(&idp) - errors0, 2, "two failed attempts");
    assert_eq!(refreshes(&idp) - ok0, 1, "then one success");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_up_to_ten_seconds() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = sign_in(&idp, &client, &config, ALICE).await;
    let rt = t.refresh_token.clone().unwrap();
    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();

    idp.fail(json!({"endpoint": "token", "count": 1, "status": 429, "retry_after": 2}));
    let started = Instant::now();
    client
        .refresh(&rt, &scopes)
        .await
        .expect("waited and retried");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 2 honoured"
    );

    // A longer Retry-After is not waited for: Throttled at once.
    let errors0 = token_errors(&idp);
    idp.fail(json!({"endpoint": "token", "count": 1, "status": 429, "retry_after": 30}));
    let started = Instant::now();
    let e = client.refresh(&rt, &scopes).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.kind, ErrorKind::Throttled);
    assert!(e.transient);
    assert_eq!(e.retry_after_s, Some(30));
    assert_eq!(e.provider_error.as_deref(), Some("temporarily_unavailable"));
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS90055"));
    assert!(e.correlation_id.is_some());
    assert_eq!(token_errors(&idp) - errors0, 1, "no retry");

    // Persistent 503: three attempts, then a transient ProviderError.
    let errors0 = token_errors(&idp);
    idp.fail(json!({"endpoint": "token", "count": 5, "status": 503}));
    let e2 = client.refresh(&rt, &scopes).await.unwrap_err();
    assert_eq!(e2.kind, ErrorKind::ProviderError);
    assert!(e2.transient);
    assert_eq!(e2.provider_code.as_deref(), Some("AADSTS90033"));
    assert_eq!(token_errors(&idp) - errors0, 3, "three attempts");
    assert!(e2.hint.is_some());
    assert_no_secrets(&idp, &[&e, &e2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_grant_700082_is_consent_required_with_code_correlation_and_hints() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = sign_in(&idp, &client, &config, ALICE).await;
    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();
    let revoked = idp.post(
        "/admin/revoke_refresh_tokens",
        &json!({"user": ALICE, "aadsts": 700082}),
    );
    assert!(revoked["revoked"].as_u64().unwrap_or(0) >= 1);
    let e = client
        .refresh(t.refresh_token.as_ref().unwrap(), &scopes)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired);
    assert!(!e.transient);
    assert_eq!(e.provider_error.as_deref(), Some("invalid_grant"));
    assert_eq!(e.provider_code.as_deref(), Some("AADSTS700082"));
    // The correlation id is the client-request-id we sent.
    let sent: Value = idp.get("/admin/requests?endpoint=token");
    let last = sent
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .unwrap_or(Value::Null);
    let header = last["headers"]["client-request-id"]
        .as_str()
        .map(str::to_string)
        .expect("client-request-id sent");
    assert_eq!(e.correlation_id.as_deref(), Some(header.as_str()));
    let hint = e.hint.clone().expect("a hint");
    assert!(hint.en.contains("Sign in again"), "{}", hint.en);
    assert!(hint.de.contains("erneut anmelden"), "{}", hint.de);
    assert!(e.message.en.contains("AADSTS700082") && e.message.de.contains("AADSTS700082"));
    assert_ne!(e.message.en, e.message.de);
    assert_no_secrets(&idp, &[&e]);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_invalid_grant_and_7000218_hints() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = sign_in(&idp, &client, &config, ALICE).await;
    let rt = t.refresh_token.clone().unwrap();
    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();

    idp.fail(json!({"endpoint": "token", "count": 1, "status": 400, "error": "invalid_grant", "aadsts": 700082}));
    let e1 = client.refresh(&rt, &scopes).await.unwrap_err();
    assert_eq!(e1.kind, ErrorKind::ConsentRequired);
    assert_eq!(e1.provider_code.as_deref(), Some("AADSTS700082"));

    // Real 7000218: a confidential client without its secret.
    let conf = idp.config(json!({"client_id": CONFIDENTIAL_CLIENT}));
    let c2 = OAuthClient::new(&conf).unwrap();
    let e2 = c2.refresh(&rt, &scopes).await.unwrap_err();
    assert_eq!(e2.kind, ErrorKind::ProviderError);
    assert_eq!(e2.provider_error.as_deref(), Some("invalid_client"));
    assert_eq!(e2.provider_code.as_deref(), Some("AADSTS7000218"));
    let hint = e2.hint.clone().expect("hint");
    assert!(
        hint.en.contains("Allow public client flows") && hint.en.contains("Mobile and desktop")
    );
    assert!(hint.de.contains("Öffentliche Clientflows zulassen"));
    assert!(!e2.transient);

    // A garbled refresh token.
    let e3 = client
        .refresh(&Secret::new("not-a-refresh-token-0123456789"), &scopes)
        .await
        .unwrap_err();
    assert_eq!(e3.kind, ErrorKind::ConsentRequired);
    assert_eq!(e3.provider_code.as_deref(), Some("AADSTS9002313"));
    assert_no_secrets(&idp, &[&e1, &e2, &e3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn network_errors_keep_the_host_and_are_transient() {
    let idp = Idp::start();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let config = idp.config(json!({"authority": format!("http://127.0.0.1:{port}")}));
    let client = OAuthClient::new(&config).unwrap();
    let scopes = delegated_scopes(&config, Protocols::ALL).unwrap();
    let started = Instant::now();
    let e = client
        .refresh(&Secret::new("rt-value-that-must-not-leak-123"), &scopes)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network);
    assert!(e.transient);
    assert!(started.elapsed() >= Duration::from_millis(1400), "retried");
    assert!(e.message.en.contains("127.0.0.1"), "{}", e.message.en);
    assert!(!e.message.en.contains("rt-value") && !e.message.en.contains('?'));
    assert!(e.hint.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_extra_roots_and_app_tokens() {
    let idp = Idp::start();
    let config = idp.app_config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let t = client
        .client_credentials()
        .await
        .expect("app token over TLS");
    assert!(t.refresh_token.is_none() && t.id.is_none());
    assert!(t.scopes.iter().any(|s| s == APP_SCOPE));
    assert!(t.expires_at > t.issued_at);

    // Without the CA the certificate is not trusted: Tls, not retried.
    let mut untrusting = config.clone();
    untrusting.extra_roots.clear();
    let client = OAuthClient::new(&untrusting).unwrap();
    let errors0 = token_errors(&idp);
    let e = client.client_credentials().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Tls, "{}", e.message.en);
    assert!(!e.transient);
    assert_eq!(token_errors(&idp), errors0);

    // A wrong secret.
    let wrong = idp.app_config(json!({"client_secret": "wrong-secret-value-0000"}));
    let e2 = OAuthClient::new(&wrong)
        .unwrap()
        .client_credentials()
        .await
        .unwrap_err();
    assert_eq!(e2.kind, ErrorKind::ProviderError);
    assert_eq!(e2.provider_code.as_deref(), Some("AADSTS7000215"));
    assert!(e2.hint.as_ref().unwrap().en.contains("new secret"));
    assert_no_secrets(&idp, &[&e, &e2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_code_start_and_one_poll() {
    let idp = Idp::start();
    let config = idp.config(json!({}));
    let client = OAuthClient::new(&config).unwrap();
    let scopes =
        delegated_scopes(&config, Protocols::of(mailoauth::protocol::Protocol::Imap)).unwrap();
    let dc = client.device_start(&scopes).await.unwrap();
    assert_eq!(dc.user_code.len(), 9);
    assert!(dc.verification_uri.starts_with("http://127.0.0.1:"));
    assert!(dc.message.contains(&dc.user_code));
    assert!(dc.expires_at > mailoauth::auth::now());
    assert!(matches!(
        client.device_poll(&dc).await.unwrap(),
        DevicePoll::Pending | DevicePoll::SlowDown
    ));
    idp.approve_device(&dc.user_code, Some(BOB));
    let done = match client.device_poll(&dc).await.unwrap() {
        DevicePoll::Done(t) => t,
        other => panic!("expected tokens, got {other:?}"),
    };
    assert_eq!(
        done.id
            .as_ref()
            .and_then(|c| c.preferred_username.as_deref()),
        Some(BOB)
    );
    assert!(done.refresh_token.is_some());
    // Redeemed: a second poll is an error, not a token.
    let e = client.device_poll(&dc).await.unwrap_err();
    assert!(e.provider_code.is_some());
    assert_no_secrets(&idp, &[&e]);
}
