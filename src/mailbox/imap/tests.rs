//! The IMAP session against small scripted servers (the replies Dovecot
//! never gives: Exchange's "authenticated but not connected", a dropped
//! connection during AUTHENTICATE, a literal larger than the limit).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::*;

/// A plaintext loopback server answering each tagged command with the
/// scripted reply for its verb; records the lines it got.
fn server(script: Vec<(&'static str, String)>) -> (u16, Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let h = std::thread::spawn(move || {
        let Ok((sock, _)) = l.accept() else { return };
        let mut w = sock.try_clone().unwrap();
        let mut r = BufReader::new(sock);
        let _ = w.write_all(b"* OK scripted\r\n");
        let mut line = String::new();
        let mut last_tag = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            let l = line.trim_end().to_string();
            line.clear();
            seen2.lock().unwrap().push(l.clone());
            let mut parts = l.splitn(3, ' ');
            let tag = parts.next().unwrap_or("").to_string();
            let verb = parts.next().unwrap_or("").to_ascii_uppercase();
            let reply = script
                .iter()
                .find(|(v, _)| *v == verb)
                .map(|(_, r)| r.replace("{tag}", &tag));
            if reply.is_some() {
                last_tag = tag.clone();
            }
            match reply {
                Some(r) if r.ends_with("CLOSE") => {
                    let _ = w.write_all(r.trim_end_matches("CLOSE").as_bytes());
                    return;
                }
                Some(r) => {
                    let _ = w.write_all(r.as_bytes());
                }
                None => {
                    // The SASL response line (no tag/verb of its own).
                    if let Some((_, r)) = script.iter().find(|(v, _)| *v == "SASL") {
                        if r == "CLOSE" {
                            return;
                        }
                        let _ = w.write_all(r.replace("{tag}", &last_tag).as_bytes());
                    }
                }
            }
        }
    });
    (port, seen, h)
}

fn endpoint(port: u16) -> Endpoint {
    let cfg = crate::config::parse(r#"{"client_id":"00000000-0000-0000-0000-0000000000a1"}"#)
        .unwrap()
        .config;
    let mut ep = Endpoint::new(&cfg, "127.0.0.1", port, Security::None).unwrap();
    ep.io_timeout = Duration::from_secs(5);
    ep
}

fn caps() -> (&'static str, String) {
    (
        "CAPABILITY",
        "* CAPABILITY IMAP4rev1 AUTH=XOAUTH2 UIDPLUS MOVE\r\n{tag} OK done\r\n".to_string(),
    )
}

fn login(port: u16) -> Result<Session> {
    Session::login(
        &endpoint(port),
        &Interrupt::new(),
        Options::default(),
        "shared@contoso.test",
        &Secret::new("tok-abc"),
        "INBOX",
    )
}

#[test]
fn authenticated_but_not_connected_is_access_denied() {
    let (port, _, h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK AUTHENTICATE completed.\r\n".into()),
        (
            "SELECT",
            "{tag} BAD User is authenticated but not connected.\r\n".into(),
        ),
    ]);
    let e = login(port).err().unwrap();
    assert_eq!(e.kind, ErrorKind::MailboxAccessDenied, "{e:?}");
    let hint = e.hint.clone().unwrap();
    assert!(hint.en.contains("object id"));
    assert!(hint.en.contains("shared@contoso.test"));
    assert!(hint.de.contains("Objekt-ID"));
    assert!(e.server_reply.as_deref().unwrap().contains("not connected"));
    drop(h);
}

#[test]
fn authenticationfailed_after_error_challenge() {
    let (port, seen, h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        (
            "SASL",
            "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n{tag} NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
                .into(),
        ),
    ]);
    let e = login(port).err().unwrap();
    assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
    assert!(
        e.server_reply
            .as_deref()
            .unwrap()
            .contains("[AUTHENTICATIONFAILED]")
    );
    assert!(!format!("{e:?}").contains("tok-abc"));
    h.join().unwrap();
    let seen = seen.lock().unwrap();
    // The error challenge was answered with an empty line.
    assert_eq!(seen.last().map(String::as_str), Some(""));
}

#[test]
fn unavailable_is_transient() {
    let (port, _, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        (
            "SASL",
            "{tag} NO [UNAVAILABLE] Temporary authentication failure.\r\n".into(),
        ),
    ]);
    let e = login(port).err().unwrap();
    assert_eq!(e.kind, ErrorKind::Network);
    assert!(e.transient);
}

#[test]
fn dropped_during_authenticate_hints_at_token_size() {
    let (port, _, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "CLOSE".into()),
    ]);
    let e = login(port).err().unwrap();
    assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
    assert!(e.hint.as_ref().unwrap().en.contains("8192"));
}

#[test]
fn no_oauth_mechanism() {
    let (port, _, _h) = server(vec![(
        "CAPABILITY",
        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".into(),
    )]);
    assert_eq!(login(port).err().unwrap().kind, ErrorKind::Protocol);
}

#[test]
fn a_literal_past_the_limit_is_too_large() {
    let big = "x".repeat(200_000);
    let (port, _, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK done\r\n".into()),
        (
            "SELECT",
            "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n{tag} OK [READ-WRITE] done\r\n".into(),
        ),
        (
            "UID",
            // Sizes claim 10 bytes; the body literal announces 200,000.
            format!(
                "* 1 FETCH (UID 5 RFC822.SIZE 10 BODY[] {{200000}}\r\n{big})\r\n{{tag}} OK done\r\n"
            ),
        ),
    ]);
    let mut s = login(port).unwrap();
    assert_eq!(s.selected().unwrap().uid_validity, 7);
    let mut got = Vec::new();
    let r = s.fetch_many(&[(5, 10)], |u, r| {
        got.push((u, r.map(|b| b.len())));
        Ok(())
    });
    assert_eq!(r.unwrap_err().kind, ErrorKind::TooLarge);
    assert!(s.is_broken());
}

#[test]
fn access_token_expired_bye() {
    let (port, _, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK done\r\n".into()),
        (
            "SELECT",
            "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n{tag} OK [READ-WRITE] done\r\n".into(),
        ),
        (
            "NOOP",
            "* BYE Session invalidated - AccessTokenExpired\r\nCLOSE".into(),
        ),
    ]);
    let mut s = login(port).unwrap();
    let e = s.noop().unwrap_err();
    assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
    assert!(e.transient);
    assert!(s.is_broken());
}

#[test]
fn uid_sets() {
    assert_eq!(uid_set(&[5, 1, 2, 3, 9, 7, 8]), "1:3,5,7:9");
    assert_eq!(uid_set(&[4]), "4");
    assert_eq!(
        uid_set(&[u32::MAX, u32::MAX - 1]),
        format!("{}:{}", u32::MAX - 1, u32::MAX)
    );
}
