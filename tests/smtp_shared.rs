//! A shared mailbox: `mailbox` in the request logs in as
//! shared@contoso.test with alice's grant (Exchange's Send As / Full
//! Access). The stack allows that only in its grant mode
//! (`MAILOAUTH_STACK_AUTH_MODE=grant`, the IdP's `/dovecot/grant`); in the
//! default introspection mode Dovecot cannot tell the IdP which mailbox is
//! asked for, so the login is refused and the library must say so clearly.

mod smtp_common;
mod support;

use std::time::Duration;

use mail_parser::MessageParser;
use mailoauth::Context;
use mailoauth::error::ErrorKind;
use serde_json::json;
use smtp_common::*;
use support::{authorize_decide, follow_to_listener};

const USER: &str = "alice@contoso.test";
const SHARED: &str = "shared@contoso.test";

fn signed_in(stack: &Stack, dir: &std::path::Path) -> Context {
    let ctx = Context::new(stack.config(dir, "starttls", json!({}))).unwrap();
    let req = json!({"account": USER, "protocols": ["smtp"], "flow": "browser"}).to_string();
    let op = ctx.consent_begin(&req).unwrap();
    let url = op.info()["authorize_url"].as_str().unwrap().to_string();
    let location = authorize_decide(&url, true, Some(USER));
    let page = follow_to_listener(&location);
    assert_eq!(page.status, 200, "{}", page.body);
    ctx.consent_settle(&op, Duration::from_secs(20))
        .expect("finished")
        .unwrap();
    ctx
}

#[test]
fn a_shared_mailbox_sends_with_the_accounts_grant() {
    let Some(stack) = Stack::load() else { return };
    let grant_mode = stack.v["dovecot"]["auth_mode"].as_str() == Some("grant");
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in(&stack, dir.path());
    let tag = nonce();
    let to = format!("shared-{tag}@contoso.test");
    let req = json!({"account": USER, "mailbox": SHARED, "timeout_ms": 20000, "message": {
        "to": [to], "subject": format!("Im Auftrag {tag}"), "text": "Grüße aus dem Team-Postfach"}})
    .to_string();
    let r = ctx.smtp_send(&req);
    if grant_mode {
        let out = r.unwrap_or_else(|e| panic!("{:?}: {}", e.kind, e.message.en));
        assert!(out["server_reply"].as_str().unwrap().starts_with("250"));
        let got = stack.wait_for_mail(&to, &tag, Duration::from_secs(10));
        let m = MessageParser::default().parse(&got).unwrap();
        // from defaults to the mailbox, not to the account
        assert_eq!(m.from().unwrap().first().unwrap().address(), Some(SHARED));
        assert_eq!(m.subject(), Some(format!("Im Auftrag {tag}").as_str()));
        assert_eq!(
            m.body_text(0).unwrap().trim_end(),
            "Grüße aus dem Team-Postfach"
        );
        assert!(String::from_utf8_lossy(&got).contains(&format!("<{SHARED}>")));
        let s = ctx.smtp_stats();
        assert_eq!((s.messages_sent, s.auth_rejected), (1, 0), "{s:?}");
        // bob's mailbox is not alice's to use, even in grant mode
        let bob = json!({"account": USER, "mailbox": "bob@contoso.test", "message": {
            "to": [to], "subject": format!("nein {tag}"), "text": "x"}})
        .to_string();
        let e = ctx.smtp_send(&bob).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AuthRejected, "{}", e.message.en);
    } else {
        let e = r.expect_err("introspection mode refuses alice's token for shared@");
        assert_eq!(e.kind, ErrorKind::AuthRejected, "{}", e.message.en);
        let hint = e.hint.clone().expect("an admin hint");
        assert!(hint.en.contains("shared mailbox"), "{}", hint.en);
        assert!(!hint.de.is_empty());
        assert!(
            e.server_reply.as_deref().unwrap_or("").starts_with("535"),
            "{:?}",
            e.server_reply
        );
        // one forced refresh and one retry, then the refusal
        let s = ctx.smtp_stats();
        assert_eq!(
            (s.auth_rejected, s.forced_refreshes, s.messages_sent),
            (2, 1, 0),
            "{s:?}"
        );
        assert_eq!(stack.mail_count(&to), 0);
        // alice herself still sends
        let own = json!({"account": USER, "message": {
            "to": [to], "subject": format!("selbst {tag}"), "text": "x"}})
        .to_string();
        ctx.smtp_send(&own).unwrap();
        stack.wait_for_mail(&to, &format!("selbst {tag}"), Duration::from_secs(10));
    }
}
