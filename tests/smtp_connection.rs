//! The SMTP connection layer against the stack's real Postfix (tokens
//! minted by the identity imitation) and against a scripted fake server for
//! the replies Postfix does not give (refused recipients, Exchange errors).

mod smtp_common;
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lettre::message::Mailbox;
use mail_parser::{MessageParser, MimeHeaders};
use mailoauth::config::{Security, Server};
use mailoauth::error::ErrorKind;
use mailoauth::secret::Secret;
use mailoauth::smtp::compose::{self, Composed};
use mailoauth::smtp::connection::{Connection, Endpoint, Mechanism};
use mailoauth::smtp::request::{Attachment, MessageSpec};
use serde_json::json;
use smtp_common::*;

fn mb(s: &str) -> Mailbox {
    s.parse().unwrap()
}

fn message(from: &str, to: &str, bcc: &str, tag: &str) -> Composed {
    compose::compose(&MessageSpec {
        from: mb(&format!("Jörg Übel <{from}>")),
        to: vec![mb(&format!("Änne Weiß <{to}>"))],
        cc: vec![],
        bcc: vec![mb(bcc)],
        reply_to: None,
        subject: format!("Prüfbericht {tag} – Größe"),
        text: Some("Grüße aus München.\n.\nZeile nach dem Punkt".into()),
        html: Some("<p>Grüße aus <b>München</b></p>".into()),
        attachments: vec![Attachment {
            name: "daten.bin".into(),
            content_type: "application/octet-stream".into(),
            data: (0..4096u32).map(|i| (i * 7 % 256) as u8).collect(),
        }],
    })
    .unwrap()
}

fn endpoint(cfg: &mailoauth::Config, port: u16, security: Security) -> Endpoint {
    let mut ep = Endpoint::new(
        cfg,
        Server {
            // The stack's mail host (127.0.0.2 unless the stack was moved).
            host: cfg
                .servers
                .smtp
                .as_ref()
                .map_or_else(|| "127.0.0.2".to_string(), |s| s.host.clone()),
            port,
            security,
        },
    )
    .unwrap();
    ep.connect_timeout = Duration::from_secs(5);
    ep.io_timeout = Duration::from_secs(10);
    ep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_mode_delivers_what_was_composed() {
    let Some(stack) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = "carol@contoso.test";
    let token = stack.mint(user, &[]);
    for (mode, security) in [("starttls", Security::StartTls), ("tls", Security::Tls)] {
        let cfg = stack.config(dir.path(), mode, json!({}));
        let tag = nonce();
        let to = format!("conn-{tag}@contoso.test");
        let bcc = format!("conn-bcc-{tag}@contoso.test");
        let msg = message(user, &to, &bcc, &tag);
        let mut c = Connection::open(&endpoint(&cfg, stack.smtp_port(mode), security))
            .await
            .unwrap();
        assert_eq!(
            c.authenticate(user, &token).await.unwrap(),
            Mechanism::Xoauth2
        );
        assert!(c.is_authenticated_with(user, &token));
        let sent = c.send(&msg, user).await.unwrap();
        assert!(sent.reply.starts_with("250"), "{}", sent.reply);
        assert_eq!(sent.accepted, vec![to.clone(), bcc.clone()]);
        // The same connection sends again.
        let again = message(user, &to, &bcc, &nonce());
        c.send(&again, user).await.unwrap();
        c.close().await;

        // Both messages went to `to` (whose name holds the tag): find the
        // first one by its Message-ID.
        let first_id = msg.message_id.clone().unwrap();
        let got = stack.wait_for_mail(&to, &first_id, Duration::from_secs(10));
        let m = MessageParser::default().parse(&got).unwrap();
        assert_eq!(
            m.subject(),
            Some(format!("Prüfbericht {tag} – Größe").as_str())
        );
        assert_eq!(m.from().unwrap().first().unwrap().name(), Some("Jörg Übel"));
        assert_eq!(m.to().unwrap().first().unwrap().name(), Some("Änne Weiß"));
        assert_eq!(
            m.body_text(0).unwrap().replace("\r\n", "\n"),
            "Grüße aus München.\n.\nZeile nach dem Punkt"
        );
        assert!(m.body_html(0).unwrap().contains("<b>München</b>"));
        let att = m.attachments().next().unwrap();
        assert_eq!(att.attachment_name(), Some("daten.bin"));
        let want: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(att.contents(), want.as_slice());
        assert_eq!(
            format!("<{}>", m.message_id().unwrap()),
            msg.message_id.clone().unwrap()
        );
        // Bcc: delivered, but never in the headers.
        assert!(m.bcc().is_none());
        assert!(!String::from_utf8_lossy(&got).contains(&bcc));
        let hidden = stack.wait_for_mail(&bcc, &tag, Duration::from_secs(10));
        assert!(!String::from_utf8_lossy(&hidden).contains(&bcc));
    }
}

#[tokio::test]
async fn a_rejected_token_reports_the_servers_final_reply() {
    let Some(stack) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config(dir.path(), "starttls", json!({}));
    let mut c = Connection::open(&endpoint(
        &cfg,
        stack.smtp_port("starttls"),
        Security::StartTls,
    ))
    .await
    .unwrap();
    let bogus = Secret::new("not-a-token-0123456789abcdef");
    let e = c
        .authenticate("carol@contoso.test", &bogus)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected, "{}", e.message.en);
    let reply = e.server_reply.clone().unwrap();
    assert!(reply.starts_with("535 5.7.8"), "{reply}");
    assert!(!reply.contains("not-a-token"));
    assert!(e.hint.is_some());
    assert!(!c.is_authenticated());
}

#[tokio::test]
async fn oauthbearer_when_the_server_offers_only_that() {
    let Some(stack) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = stack.config(dir.path(), "starttls", json!({}));
    let user = "carol@contoso.test";
    let token = stack.mint(user, &[]);
    for (mode, security) in [("starttls", Security::StartTls), ("tls", Security::Tls)] {
        let tag = nonce();
        let to = format!("bearer-{tag}@contoso.test");
        let mut c = Connection::open(&endpoint(&cfg, stack.bearer_port(mode), security))
            .await
            .unwrap();
        assert_eq!(
            c.authenticate(user, &token).await.unwrap(),
            Mechanism::OAuthBearer
        );
        c.send(
            &message(user, &to, &format!("b2-{tag}@contoso.test"), &tag),
            user,
        )
        .await
        .unwrap();
        stack.wait_for_mail(&to, &tag, Duration::from_secs(10));
        // A bad token: the error challenge is answered, the final reply read.
        let mut c = Connection::open(&endpoint(&cfg, stack.bearer_port(mode), security))
            .await
            .unwrap();
        let e = c
            .authenticate(user, &Secret::new("bogus-bearer-token-xyz"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AuthRejected);
        assert!(
            e.server_reply.clone().unwrap().starts_with("535"),
            "{:?}",
            e.server_reply
        );
    }
}

#[tokio::test]
async fn untrusted_certificates_and_missing_tls_fail_before_auth() {
    let Some(stack) = Stack::load() else { return };
    let dir = tempfile::tempdir().unwrap();
    // No tls.ca_file: the stack's certificate is not trusted.
    let mut v: serde_json::Value =
        serde_json::from_str(&stack.config_json(dir.path(), "starttls", json!({}))).unwrap();
    v.as_object_mut().unwrap().remove("tls");
    let cfg = mailoauth::config::parse(&v.to_string()).unwrap().config;
    for (mode, security) in [("starttls", Security::StartTls), ("tls", Security::Tls)] {
        let e = Connection::open(&endpoint(&cfg, stack.smtp_port(mode), security))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Tls, "{mode}: {}", e.message.en);
    }
    // Plaintext to a server that offers AUTH only after STARTTLS: no token
    // goes out.
    let cfg = stack.config(dir.path(), "starttls", json!({}));
    let mut c = Connection::open(&endpoint(&cfg, stack.smtp_port("starttls"), Security::None))
        .await
        .unwrap();
    let e = c
        .authenticate("carol@contoso.test", &Secret::new("never-sent-token"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Protocol, "{}", e.message.en);
    // STARTTLS against the implicit-TLS port: no greeting, a clear timeout.
    let mut ep = endpoint(&cfg, stack.smtp_port("tls"), Security::StartTls);
    ep.connect_timeout = Duration::from_millis(800);
    let started = std::time::Instant::now();
    let e = Connection::open(&ep).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// A scripted fake server (plaintext on loopback, the test rule).

type Script = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Serves connections until the test ends; records every line received
/// (the AUTH line shortened).
fn fake_server(script: Script) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let log = log2.clone();
            let script = script.clone();
            std::thread::spawn(move || {
                let _ = s.write_all(b"220 fake ESMTP\r\n");
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut in_data = false;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let l = line.trim_end().to_string();
                    if in_data {
                        if l == "." {
                            in_data = false;
                            log.lock().unwrap().push("<end of data>".into());
                            let reply = script(".").unwrap_or_else(|| "250 2.0.0 queued".into());
                            let _ = s.write_all(format!("{reply}\r\n").as_bytes());
                        }
                        continue;
                    }
                    let shown = if l.starts_with("AUTH") {
                        "AUTH …".to_string()
                    } else {
                        l.clone()
                    };
                    log.lock().unwrap().push(shown);
                    let upper = l.to_ascii_uppercase();
                    let reply = script(&l).unwrap_or_else(|| {
                        if upper.starts_with("EHLO") {
                            "250-fake\r\n250-8BITMIME\r\n250-AUTH LOGIN XOAUTH2\r\n250 PIPELINING"
                                .into()
                        } else if upper.starts_with("AUTH") {
                            "235 2.7.0 Authentication successful".into()
                        } else if upper.starts_with("DATA") {
                            in_data = true;
                            "354 go ahead".into()
                        } else if upper.starts_with("QUIT") {
                            "221 bye".into()
                        } else {
                            "250 2.0.0 ok".into()
                        }
                    });
                    let _ = s.write_all(format!("{reply}\r\n").as_bytes());
                    if upper.starts_with("QUIT") {
                        return;
                    }
                }
            });
        }
    });
    (port, log)
}

fn fake_endpoint(port: u16) -> Endpoint {
    let cfg = mailoauth::config::parse(
        &json!({"provider": "custom", "authority": "http://127.0.0.1:9", "allow_plaintext_loopback": true,
            "client_id": "x", "servers": {"smtp": {"host": "127.0.0.1", "port": port, "security": "none"}}})
        .to_string(),
    )
    .unwrap()
    .config;
    let mut ep = Endpoint::new(&cfg, cfg.servers.smtp.clone().unwrap()).unwrap();
    ep.io_timeout = Duration::from_secs(5);
    ep
}

fn plain(to: &[&str]) -> Composed {
    compose::compose(&MessageSpec {
        from: mb("alice@contoso.test"),
        to: to.iter().map(|t| mb(t)).collect(),
        cc: vec![],
        bcc: vec![],
        reply_to: None,
        subject: "x".into(),
        text: Some("x".into()),
        html: None,
        attachments: vec![],
    })
    .unwrap()
}

#[tokio::test]
async fn refused_recipients_fail_the_whole_send_and_nothing_is_sent() {
    let script: Script = Arc::new(|l: &str| {
        (l.starts_with("RCPT") && l.contains("bad"))
            .then(|| "550 5.1.1 <bad>: Recipient address rejected".to_string())
    });
    let (port, log) = fake_server(script);
    let mut c = Connection::open(&fake_endpoint(port)).await.unwrap();
    c.authenticate("alice@contoso.test", &Secret::new("tok"))
        .await
        .unwrap();
    let e = c
        .send(
            &plain(&["ok@x.test", "bad1@x.test", "bad2@x.test"]),
            "alice@contoso.test",
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::SendRejected);
    assert_eq!(e.rejected, vec!["bad1@x.test", "bad2@x.test"]);
    assert!(e.server_reply.clone().unwrap().starts_with("550 5.1.1"));
    assert!(e.message.en.contains("bad1@x.test, bad2@x.test"));
    {
        let log = log.lock().unwrap();
        assert!(!log.iter().any(|l| l == "DATA"), "{log:?}");
        assert!(log.iter().any(|l| l == "RSET"), "{log:?}");
    }
    // The connection is still good.
    let sent = c
        .send(&plain(&["ok@x.test"]), "alice@contoso.test")
        .await
        .unwrap();
    assert_eq!(sent.reply, "250 2.0.0 queued");
}

#[tokio::test]
async fn exchange_errors_are_mapped() {
    let script: Script = Arc::new(|l: &str| {
        l.starts_with("AUTH").then(|| {
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more details.".to_string()
        })
    });
    let (port, _) = fake_server(script);
    let mut c = Connection::open(&fake_endpoint(port)).await.unwrap();
    let e = c
        .authenticate("alice@contoso.test", &Secret::new("tok"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    assert!(
        e.hint
            .clone()
            .unwrap()
            .en
            .contains("-SmtpClientAuthenticationDisabled $false")
    );
    assert!(e.hint.clone().unwrap().de.contains("Set-TransportConfig"));

    let script: Script = Arc::new(|l: &str| {
        (l == ".").then(|| "554 5.2.252 SendAsDenied; alice@contoso.test not allowed to send as alice@contoso.test; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied".to_string())
    });
    let (port, _) = fake_server(script);
    let mut c = Connection::open(&fake_endpoint(port)).await.unwrap();
    c.authenticate("alice@contoso.test", &Secret::new("tok"))
        .await
        .unwrap();
    let e = c
        .send(&plain(&["x@y.test"]), "alice@contoso.test")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::MailboxAccessDenied);
    assert!(
        e.hint
            .clone()
            .unwrap()
            .en
            .contains("Add-RecipientPermission")
    );

    let script: Script = Arc::new(|l: &str| {
        l.starts_with("MAIL")
            .then(|| "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded".to_string())
    });
    let (port, _) = fake_server(script);
    let mut c = Connection::open(&fake_endpoint(port)).await.unwrap();
    c.authenticate("alice@contoso.test", &Secret::new("tok"))
        .await
        .unwrap();
    let e = c
        .send(&plain(&["x@y.test"]), "alice@contoso.test")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Throttled);
    assert!(e.transient);

    // A Gmail-style error challenge: answered with an empty line.
    let script: Script = Arc::new(|l: &str| {
        if l.starts_with("AUTH") {
            Some("334 eyJzdGF0dXMiOiI0MDEifQ==".to_string())
        } else if l.is_empty() {
            Some("535 5.7.8 Username and Password not accepted".to_string())
        } else {
            None
        }
    });
    let (port, log) = fake_server(script);
    let mut c = Connection::open(&fake_endpoint(port)).await.unwrap();
    let e = c
        .authenticate("alice@contoso.test", &Secret::new("tok"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected);
    let reply = e.server_reply.clone().unwrap();
    assert!(reply.starts_with("535 5.7.8"), "{reply}");
    assert!(reply.contains("{\"status\":\"401\"}"), "{reply}");
    assert!(log.lock().unwrap().iter().any(String::is_empty));
}

#[tokio::test]
async fn a_stalled_server_times_out_and_a_reset_is_a_network_error() {
    // Greets, then never answers EHLO.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, s) in listener.incoming().enumerate() {
            let Ok(mut s) = s else { return };
            if i == 0 {
                let _ = s.write_all(b"220 stall\r\n");
                held.push(s);
            } else {
                drop(s); // reset right after connect
            }
        }
    });
    let mut ep = fake_endpoint(port);
    ep.connect_timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    let e = Connection::open(&ep).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(3));
    let e = Connection::open(&ep).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Network, "{}", e.message.en);
}
