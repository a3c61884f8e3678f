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
    let big = "x".repeat(3_000_000);
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
            // Sizes claim 10 bytes; the body literal announces 3,000,000
            // (more than the window's read budget allows).
            format!(
                "* 1 FETCH (UID 5 RFC822.SIZE 10 BODY[] {{3000000}}\r\n{big})\r\n{{tag}} OK done\r\n"
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

/// A server in IDLE that sends `* OK Still here` every 150 ms (Dovecot
/// does it every 2 minutes): the crate's inactivity timeout would never
/// fire; our deadline does. Then a server that reports EXISTS during IDLE.
fn idle_server(keepalive_ms: u64, exists_after_ms: Option<u64>) -> (u16, Arc<Mutex<Vec<String>>>) {
    scripted_idle_server(true, keepalive_ms, exists_after_ms)
}

/// `idle`: whether IDLE is advertised; without it, NOOP reports
/// `* 2 EXISTS` when `exists_after_ms` is set.
fn scripted_idle_server(
    idle: bool,
    keepalive_ms: u64,
    exists_after_ms: Option<u64>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let Ok((sock, _)) = l.accept() else { return };
        let w = Arc::new(Mutex::new(sock.try_clone().unwrap()));
        let send = |w: &Arc<Mutex<std::net::TcpStream>>, s: &str| {
            let _ = w.lock().unwrap().write_all(s.as_bytes());
        };
        send(&w, "* OK scripted\r\n");
        let mut r = BufReader::new(sock);
        let mut idle_tag = String::new();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                return;
            }
            let l = line.trim_end().to_string();
            seen2.lock().unwrap().push(l.clone());
            let mut parts = l.splitn(3, ' ');
            let tag = parts.next().unwrap_or("").to_string();
            let verb = parts.next().unwrap_or("").to_ascii_uppercase();
            match (tag.as_str(), verb.as_str()) {
                ("DONE", _) => {
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    send(&w, &format!("{idle_tag} OK Idle completed.\r\n"));
                }
                (_, "CAPABILITY") => send(
                    &w,
                    &format!(
                        "* CAPABILITY IMAP4rev1 AUTH=XOAUTH2{}\r\n{tag} OK done\r\n",
                        if idle { " IDLE" } else { "" }
                    ),
                ),
                (_, "AUTHENTICATE") => {
                    idle_tag = tag.clone();
                    send(&w, "+ \r\n");
                }
                (_, "SELECT") => send(
                    &w,
                    &format!(
                        "* 1 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n{tag} OK [READ-WRITE] done\r\n"
                    ),
                ),
                (_, "IDLE") => {
                    idle_tag = tag.clone();
                    send(&w, "+ idling\r\n");
                    stop.store(false, std::sync::atomic::Ordering::SeqCst);
                    let (w, stop) = (w.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let started = std::time::Instant::now();
                        let mut sent_exists = false;
                        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(keepalive_ms));
                            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                                break;
                            }
                            let mut g = w.lock().unwrap();
                            let _ = g.write_all(b"* OK Still here\r\n");
                            if let Some(ms) = exists_after_ms
                                && !sent_exists
                                && started.elapsed() >= Duration::from_millis(ms)
                            {
                                sent_exists = true;
                                let _ = g.write_all(b"* 2 EXISTS\r\n* 1 RECENT\r\n");
                            }
                        }
                    });
                }
                (_, "") => send(&w, &format!("{idle_tag} OK AUTHENTICATE completed.\r\n")),
                (_, "NOOP") if exists_after_ms.is_some() => {
                    send(&w, &format!("* 2 EXISTS\r\n{tag} OK done\r\n"))
                }
                (_, "NOOP") | (_, "LOGOUT") => send(&w, &format!("{tag} OK done\r\n")),
                _ => send(&w, &format!("{tag} BAD unknown\r\n")),
            }
        }
    });
    (port, seen)
}

#[test]
fn keepalives_do_not_extend_the_deadline() {
    let (port, seen) = idle_server(150, None);
    let mut s = login(port).unwrap();
    s.set_idle_chunk(Duration::from_secs(1));
    let t = std::time::Instant::now();
    assert!(!s.idle_wait(Duration::from_millis(2500)).unwrap());
    let secs = t.elapsed().as_secs_f64();
    assert!((2.49..3.2).contains(&secs), "{secs}");
    // Re-issued in chunks: three IDLE commands, each ended by DONE.
    let seen = seen.lock().unwrap().clone();
    let idles = seen.iter().filter(|l| l.ends_with(" IDLE")).count();
    let dones = seen.iter().filter(|l| *l == "DONE").count();
    assert_eq!((idles, dones), (3, 3), "{seen:?}");
    // The session is in step afterwards (the crate's next command works).
    s.noop().unwrap();
}

#[test]
fn exists_during_idle_wakes_the_wait() {
    let (port, _) = idle_server(100, Some(500));
    let mut s = login(port).unwrap();
    let t = std::time::Instant::now();
    assert!(s.idle_wait(Duration::from_secs(10)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(s.selected().unwrap().exists, 2);
    s.noop().unwrap();
}

#[test]
fn without_idle_a_wait_polls_with_noop() {
    // Nothing new: false at the deadline.
    let (port, seen) = scripted_idle_server(false, 100, None);
    let mut s = login(port).unwrap();
    let t = std::time::Instant::now();
    assert!(!s.idle_wait(Duration::from_millis(1200)).unwrap());
    let secs = t.elapsed().as_secs_f64();
    assert!((1.19..2.0).contains(&secs), "{secs}");
    assert!(seen.lock().unwrap().iter().any(|l| l.ends_with(" NOOP")));
    assert!(!seen.lock().unwrap().iter().any(|l| l.ends_with(" IDLE")));
    s.noop().unwrap();
    // NOOP reports new mail.
    let (port, _) = scripted_idle_server(false, 100, Some(0));
    let mut s = login(port).unwrap();
    assert!(s.idle_wait(Duration::from_millis(800)).unwrap());
}

fn select_ok() -> (&'static str, String) {
    (
        "SELECT",
        "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] x\r\n{tag} OK [READ-WRITE] done\r\n".into(),
    )
}

#[test]
fn exchange_style_fetch_items_and_a_change_on_the_way() {
    // BODY[] before UID, FLAGS after it, a flag update and an EXISTS in
    // between, one message missing (NotFound), and the tagged NO Dovecot
    // gives when some messages are gone.
    let (port, seen, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK done\r\n".into()),
        select_ok(),
        (
            "UID",
            "* 1 FETCH (BODY[] {5}\r\nfirst UID 10 FLAGS (\\Seen))\r\n\
* 2 FETCH (FLAGS (\\Deleted))\r\n\
* 4 EXISTS\r\n\
* 3 FETCH (UID 12 BODY[] {6}\r\nthird!)\r\n\
{tag} NO Some of the requested messages no longer exist\r\n"
                .into(),
        ),
        ("NOOP", "{tag} OK done\r\n".into()),
    ]);
    let mut s = login(port).unwrap();
    let mut got = Vec::new();
    s.fetch_many(&[(10, 5), (11, 5), (12, 6)], |u, r| {
        got.push((u, r.map_err(|e| e.kind)));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        got,
        vec![
            (10, Ok(b"first".to_vec())),
            (11, Err(ErrorKind::NotFound)),
            (12, Ok(b"third!".to_vec())),
        ]
    );
    assert_eq!(s.selected().unwrap().exists, 4);
    // The EXISTS seen during the fetch wakes the next wait at once.
    let t = std::time::Instant::now();
    assert!(s.idle_wait(Duration::from_secs(30)).unwrap());
    assert!(t.elapsed() < Duration::from_millis(500));
    // Our command used our own tag; the crate's next command is in step.
    s.noop().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.starts_with('m') && l.contains(" UID FETCH 10:12 (UID BODY.PEEK[])")),
        "{seen:?}"
    );
}

#[test]
fn a_literal_over_max_message_bytes_is_refused_before_reading() {
    let (port, _, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK done\r\n".into()),
        select_ok(),
        (
            "UID",
            // Announced, never sent: the reader must not wait for it.
            "* 1 FETCH (UID 5 BODY[] {4000000000}\r\n".into(),
        ),
    ]);
    let mut s = Session::login(
        &endpoint(port),
        &Interrupt::new(),
        Options {
            max_message_bytes: 1000,
            ..Options::default()
        },
        "shared@contoso.test",
        &Secret::new("tok-abc"),
        "INBOX",
    )
    .unwrap();
    let t = std::time::Instant::now();
    let e = s.fetch_many(&[(5, 10)], |_, _| Ok(())).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge, "{e:?}");
    assert!(e.message.en.contains("4000000000"), "{}", e.message.en);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(s.is_broken());
}

#[test]
fn untagged_no_and_bad_in_a_select_response_are_warnings() {
    // imap 3.0.0-alpha.15 panics on these (select.rs); RFC 3501 allows them.
    let (port, seen, _h) = server(vec![
        caps(),
        ("AUTHENTICATE", "+ \r\n".into()),
        ("SASL", "{tag} OK done\r\n".into()),
        (
            "SELECT",
            "* NO [ALERT] Mailbox is over quota\r\n* 3 EXISTS\r\n* BAD odd\r\n\
* OK [UIDVALIDITY 9] x\r\n* OK [UIDNEXT 12] y\r\n* FLAGS (\\Seen)\r\n{tag} OK [READ-WRITE] done\r\n"
                .into(),
        ),
    ]);
    let s = login(port).unwrap();
    let sel = s.selected().unwrap();
    assert_eq!(
        (sel.uid_validity, sel.exists, sel.uid_next),
        (9, 3, Some(12))
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("SELECT \"INBOX\""))
    );
}

#[test]
fn select_refusals_and_a_missing_uidvalidity() {
    for (reply, kind) in [
        (
            "{tag} NO [NONEXISTENT] Mailbox doesn't exist\r\n",
            ErrorKind::NotFound,
        ),
        ("{tag} NO [NOPERM] no\r\n", ErrorKind::MailboxAccessDenied),
        ("* 1 EXISTS\r\n{tag} OK done\r\n", ErrorKind::Protocol),
        ("{tag} BAD what\r\n", ErrorKind::Protocol),
        ("* OK x\r\nzz OK wrong tag\r\n", ErrorKind::Protocol),
    ] {
        let (port, _, _h) = server(vec![
            caps(),
            ("AUTHENTICATE", "+ \r\n".into()),
            ("SASL", "{tag} OK done\r\n".into()),
            ("SELECT", reply.into()),
        ]);
        assert_eq!(login(port).err().unwrap().kind, kind, "{reply}");
    }
}
