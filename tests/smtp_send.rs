//! SMTP sends end to end: a context signed in through the stack's identity
//! imitation, the pool, the stack's Postfix, delivered mail read back from
//! the maildirs. Each test uses its own user (the imitation is shared).

mod smtp_common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use mail_parser::{MessageParser, MimeHeaders};
use mailoauth::Context;
use mailoauth::error::ErrorKind;
use mailoauth::smtp::{self, Pools};
use serde_json::json;
use smtp_common::*;
use support::{authorize_decide, follow_to_listener};

/// A context on the stack, signed in as `user` for SMTP (sign-in page
/// submitted as that user: no global auto-consent).
fn signed_in(stack: &Stack, dir: &std::path::Path, security: &str, user: &str) -> Arc<Context> {
    let ctx = Arc::new(Context::new(stack.config(dir, security, json!({}))).unwrap());
    let req = json!({"account": user, "protocols": ["smtp"], "flow": "browser"}).to_string();
    let op = ctx.consent_begin(&req).unwrap();
    let url = op.info()["authorize_url"].as_str().unwrap().to_string();
    let location = authorize_decide(&url, true, Some(user));
    let page = follow_to_listener(&location);
    assert_eq!(page.status, 200, "{}", page.body);
    ctx.consent_settle(&op, Duration::from_secs(20))
        .expect("finished")
        .unwrap();
    ctx
}

fn run_send(ctx: &Context, pools: &Pools, json: &str) -> mailoauth::Result<smtp::Outcome> {
    let (common, msg) = smtp::prepare_send(json, ctx.config())?;
    ctx.run(
        Some(smtp::timeout_of(&common)),
        smtp::send(ctx, pools, &common, &msg),
    )
}

#[test]
fn send_reads_back_and_the_pool_caps_connections() {
    let Some(stack) = Stack::load() else { return };
    let user = "bob@contoso.test";
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in(&stack, dir.path(), "starttls", user);
    let pools = Arc::new(Pools::new());
    let tag = nonce();
    let to = format!("send-{tag}@contoso.test");
    let cc = format!("send-cc-{tag}@contoso.test");
    let bcc = format!("send-bcc-{tag}@contoso.test");
    let file = dir.path().join("bericht.pdf");
    let pdf: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &pdf).unwrap();
    let png = vec![0x89, b'P', b'N', b'G', 0, 0xff, b'\r', b'\n', 0x1a, b'\n'];
    let req = json!({
        "account": user,
        "message": {
            "to": [format!("Jürgen Müller <{to}>")], "cc": [cc], "bcc": [bcc],
            "reply_to": "Büro <buero@contoso.test>",
            "subject": format!("Übergabe {tag}: Größenänderung"),
            "text": "Sehr geehrte Damen und Herren,\nanbei die Unterlagen.\n.\nGrüße",
            "html": "<p>Sehr geehrte Damen und Herren,<br>anbei die <i>Unterlagen</i>.</p>",
            "attachments": [
                {"name": "bericht.pdf", "content_type": "application/pdf", "path": file.to_string_lossy()},
                {"name": "bild ä.png", "content_type": "image/png",
                 "base64": base64::engine::general_purpose::STANDARD.encode(&png)}
            ]
        }
    })
    .to_string();
    let out = run_send(&ctx, &pools, &req).unwrap();
    assert!(out.server_reply.starts_with("250"), "{}", out.server_reply);
    assert_eq!(out.accepted, vec![to.clone(), cc.clone(), bcc.clone()]);
    let v = out.to_json();
    assert_eq!(v["message_id"], json!(out.message_id));

    let got = stack.wait_for_mail(&to, &tag, Duration::from_secs(10));
    let m = MessageParser::default().parse(&got).unwrap();
    assert_eq!(
        m.subject(),
        Some(format!("Übergabe {tag}: Größenänderung").as_str())
    );
    assert_eq!(m.from().unwrap().first().unwrap().address(), Some(user));
    assert_eq!(
        m.to().unwrap().first().unwrap().name(),
        Some("Jürgen Müller")
    );
    assert_eq!(m.reply_to().unwrap().first().unwrap().name(), Some("Büro"));
    assert_eq!(
        m.cc().unwrap().first().unwrap().address(),
        Some(cc.as_str())
    );
    assert!(m.bcc().is_none());
    assert!(!String::from_utf8_lossy(&got).contains(&bcc));
    assert_eq!(
        m.body_text(0).unwrap().replace("\r\n", "\n"),
        "Sehr geehrte Damen und Herren,\nanbei die Unterlagen.\n.\nGrüße"
    );
    assert!(m.body_html(0).unwrap().contains("<i>Unterlagen</i>"));
    let atts: Vec<_> = m.attachments().collect();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[0].attachment_name(), Some("bericht.pdf"));
    assert_eq!(atts[0].contents(), pdf.as_slice());
    assert_eq!(atts[1].attachment_name(), Some("bild ä.png"));
    assert_eq!(atts[1].contents(), png.as_slice());
    assert_eq!(
        format!("<{}>", m.message_id().unwrap()),
        out.message_id.clone().unwrap()
    );
    stack.wait_for_mail(&cc, &tag, Duration::from_secs(10));
    stack.wait_for_mail(&bcc, &tag, Duration::from_secs(10));

    // Many threads at once: every message arrives, at most
    // smtp.max_connections (2) connections are ever opened.
    let before = pools.stats();
    let many = format!("many-{tag}@contoso.test");
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (ctx, pools, many) = (ctx.clone(), pools.clone(), many.clone());
            std::thread::spawn(move || {
                for i in 0..5 {
                    let req = json!({"account": "bob@contoso.test", "message": {
                        "to": [many], "subject": format!("n {t}-{i}"), "text": "x"}});
                    run_send(&ctx, &pools, &req.to_string()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = pools.stats();
    assert_eq!(after.messages_sent - before.messages_sent, 20);
    assert!(after.connections_opened <= 2, "{after:?}");
    support::eventually(Duration::from_secs(10), || {
        (stack.mail_count(&many) == 20).then_some(())
    });
    pools.close();
}

#[test]
fn an_expired_token_is_refreshed_once_and_a_revoked_grant_needs_consent() {
    let Some(stack) = Stack::load() else { return };
    let user = "carol@contoso.test";
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in(&stack, dir.path(), "tls", user);
    let tag = nonce();
    let to = format!("refresh-{tag}@contoso.test");
    let req = |n: u32| {
        json!({"account": user, "message": {"to": [to.clone()], "subject": format!("r{n} {tag}"), "text": "x"}})
            .to_string()
    };
    let pools = Pools::new();
    run_send(&ctx, &pools, &req(1)).unwrap();
    assert_eq!(pools.stats().forced_refreshes, 0);
    // The server-side expiry: the cached token still looks fresh to us.
    stack.post("/admin/expire_access_tokens", &json!({"user": user}));
    // A new pool (an authenticated session would keep working).
    let pools = Pools::new();
    run_send(&ctx, &pools, &req(2)).unwrap();
    let s = pools.stats();
    assert_eq!(
        (s.auth_rejected, s.forced_refreshes, s.messages_sent),
        (1, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.connections_opened, 2);
    stack.wait_for_mail(&to, &format!("r2 {tag}"), Duration::from_secs(10));

    // A revoked grant: the forced refresh fails, consent is needed.
    stack.post("/admin/revoke_refresh_tokens", &json!({"user": user}));
    stack.post("/admin/expire_access_tokens", &json!({"user": user}));
    let pools = Pools::new();
    let e = run_send(&ctx, &pools, &req(3)).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ConsentRequired, "{}", e.message.en);
    assert_eq!(pools.stats().messages_sent, 0);
}

#[test]
fn mime_and_every_forward_mode_arrive() {
    let Some(stack) = Stack::load() else { return };
    let user = "alice@contoso.test";
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in(&stack, dir.path(), "starttls", user);
    let pools = Pools::new();
    let tag = nonce();
    let to = format!("mime-{tag}@contoso.test");
    let hidden = format!("mime-bcc-{tag}@contoso.test");
    let mime = format!(
        "From: {user}\nTo: {to}\nBcc: {hidden}\nSubject: mime {tag}\nMessage-ID: <mime-{tag}@contoso.test>\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nRohe Grüße\n"
    );
    let (common, msg) = smtp::prepare_mime(
        &json!({"account": user, "envelope": "from_headers"}).to_string(),
        mime.as_bytes(),
        ctx.config(),
    )
    .unwrap();
    let out = ctx
        .run(
            Some(smtp::timeout_of(&common)),
            smtp::send(&ctx, &pools, &common, &msg),
        )
        .unwrap();
    assert_eq!(
        out.message_id.as_deref(),
        Some(format!("<mime-{tag}@contoso.test>").as_str())
    );
    let got = stack.wait_for_mail(&to, &tag, Duration::from_secs(10));
    assert!(!String::from_utf8_lossy(&got).contains(&hidden));
    assert!(String::from_utf8_lossy(&got).contains("Rohe Grüße\r\n"));
    stack.wait_for_mail(&hidden, &tag, Duration::from_secs(10));

    let original = format!(
        "From: =?utf-8?q?J=C3=BCrgen?= <juergen@fabrikam.test>\r\nTo: {user}\r\nSubject: Original {tag}\r\nMessage-ID: <orig-{tag}@fabrikam.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nInhalt für März\r\n--b\r\nContent-Type: application/octet-stream; name=\"x.bin\"\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n"
    );
    for mode in ["attachment", "inline", "redirect"] {
        let fwd_to = format!("fwd-{mode}-{tag}@contoso.test");
        let (common, msg) = smtp::prepare_forward(
            &json!({"account": user, "to": [fwd_to], "mode": mode, "comment": "Zur Info"})
                .to_string(),
            original.as_bytes(),
            ctx.config(),
        )
        .unwrap();
        ctx.run(
            Some(smtp::timeout_of(&common)),
            smtp::send(&ctx, &pools, &common, &msg),
        )
        .unwrap();
        let got = stack.wait_for_mail(&fwd_to, &tag, Duration::from_secs(10));
        let m = MessageParser::default().parse(&got).unwrap();
        match mode {
            "attachment" => {
                assert_eq!(m.subject(), Some(format!("Fwd: Original {tag}").as_str()));
                assert_eq!(m.from().unwrap().first().unwrap().address(), Some(user));
                assert_eq!(
                    m.reply_to().unwrap().first().unwrap().address(),
                    Some("juergen@fabrikam.test")
                );
                let text = String::from_utf8_lossy(&got);
                assert!(text.contains("Content-Type: message/rfc822"));
                assert!(text.contains("Content-Transfer-Encoding: 8bit"));
                assert!(
                    got.windows(original.len())
                        .any(|w| w == original.as_bytes())
                );
                let nested = m.attachments().find_map(|a| a.message()).unwrap();
                assert_eq!(
                    nested.message_id(),
                    Some(format!("orig-{tag}@fabrikam.test").as_str())
                );
            }
            "inline" => {
                let body = m.body_text(0).unwrap();
                assert!(body.contains("Zur Info"));
                assert!(body.contains("Inhalt für März"));
                let att = m.attachments().next().unwrap();
                assert_eq!(att.contents(), &[0, 1, 2, 3]);
            }
            _ => {
                assert!(
                    got.starts_with(b"Return-Path")
                        || got.windows(12).any(|w| w == b"Resent-From:")
                );
                assert_eq!(
                    m.message_id(),
                    Some(format!("orig-{tag}@fabrikam.test").as_str())
                );
                assert!(got.ends_with(original.as_bytes()));
            }
        }
    }
}

#[test]
fn bad_requests_and_untrusted_hosts_send_nothing() {
    let Some(stack) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No sign-in needed: everything fails before a token is asked for.
    let ctx = Context::new(stack.config(dir.path(), "starttls", json!({}))).unwrap();
    let pools = Pools::new();
    let e = run_send(
        &ctx,
        &pools,
        &json!({"account": "bob@contoso.test", "server": {"host": "smtp.evil.test", "port": 587},
            "message": {"to": ["x@contoso.test"], "text": "x"}})
        .to_string(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::UntrustedHost);
    let e = run_send(
        &ctx,
        &pools,
        r#"{"account":"bob@contoso.test","message":{"to":[]}}"#,
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidConfig);
    let e = run_send(
        &ctx,
        &pools,
        &json!({"account": "bob@contoso.test", "message": {"to": ["x@contoso.test"],
            "attachments": [{"name": "a", "path": dir.path().join("missing.pdf").to_string_lossy()}]}})
        .to_string(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(e.message.en.contains("missing.pdf"));
    let e = run_send(
        &ctx,
        &pools,
        &json!({"account": "bob@contoso.test", "message": {"to": ["x@contoso.test"], "subject": "a\r\nBcc: y@z.test"}}).to_string(),
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(pools.stats().connections_opened, 0);
}
