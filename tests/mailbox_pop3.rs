//! The POP3 client against the stack's Dovecot: STLS and implicit TLS,
//! XOAUTH2 and OAUTHBEARER, bytes fetched equal bytes seeded, UIDL stable
//! across connections, DELE applied only at QUIT, refused tokens.

mod mailbox_support;
mod support;

use std::time::Instant;

use mailbox_support::*;
use mailoauth::config::Security;
use mailoauth::error::ErrorKind;
use mailoauth::mailbox::Summary;
use mailoauth::mailbox::net::Interrupt;
use mailoauth::mailbox::pop3::{Options, Session};
use mailoauth::secret::Secret;

fn login(st: &Stack, user: &str, token: &Secret, security: Security, ob: bool) -> Session {
    let ep = st.endpoint("pop3", security, ob);
    let mut s = Session::connect(&ep, &Interrupt::new(), Options::default()).expect("connect");
    assert!(s.is_tls());
    s.authenticate(user, token, ep.port).expect("login");
    s
}

#[test]
fn fetch_everything_pipelined_over_both_tls_modes() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3");
    st.seed(&user, &["--count", "300", "--size", "20000", "--tricky"]);
    let token = st.mint(&user);
    let stored = st.stored_messages(&user, None);
    let stored_bytes: usize = stored.iter().map(Vec::len).sum();

    for security in [Security::Tls, Security::StartTls] {
        let mut s = login(&st, &user, &token, security, false);
        assert!(s.capabilities().has("PIPELINING"));
        let entries = s.entries().unwrap();
        assert_eq!(entries.len(), stored.len());
        let list: Vec<(u32, u64)> = entries.iter().map(|e| (e.msg, e.size)).collect();
        let started = Instant::now();
        let mut got = Vec::new();
        s.retr_many(&list, |_, r| {
            got.push(r?);
            Ok(())
        })
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        let bytes: usize = got.iter().map(Vec::len).sum();
        println!(
            "POP3 {security:?}: {} messages, {bytes} B in {secs:.3} s ({:.0} msg/s, {:.1} MB/s, debug build)",
            got.len(),
            got.len() as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        // Byte for byte, after the server's own normalisation of the tricky
        // messages (bare LF to CRLF, a final CRLF added; POP3 keeps NUL bytes).
        assert_eq!(got.len(), stored.len());
        let mut sorted = got.clone();
        sorted.sort();
        let mut expected: Vec<Vec<u8>> = stored.iter().map(|m| pop3_normalised(m)).collect();
        expected.sort();
        let differ = sorted.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{differ} of {} messages differ", stored.len());
        assert!(bytes >= stored_bytes);
        // Sizes from LIST equal the bytes fetched (except the bare-LF file,
        // whose stored size Dovecot reports).
        let wrong = entries
            .iter()
            .zip(&got)
            .filter(|(e, m)| e.size as usize != m.len())
            .count();
        assert!(wrong <= 1, "{wrong} LIST sizes differ");
        s.quit().unwrap();
    }
}

#[test]
fn summaries_from_top_and_uidl_stable_across_connections() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3");
    st.seed(&user, &["--count", "20", "--tricky"]);
    let token = st.mint(&user);

    let mut s = login(&st, &user, &token, Security::Tls, false);
    let first = s.entries().unwrap();
    let msgs: Vec<u32> = first.iter().map(|e| e.msg).collect();
    let mut summaries = Vec::new();
    s.headers(&msgs, |m, r| {
        let e = &first[(m - 1) as usize];
        summaries.push(Summary::parse(e.uid.clone(), e.size, &r?, None));
        Ok(())
    })
    .unwrap();
    s.quit().unwrap();
    assert_eq!(summaries.len(), first.len());
    assert!(
        summaries
            .iter()
            .filter(|s| !s.message_id.is_empty())
            .count()
            >= 20
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.subject.chars().any(|c| "äöüÄÖÜß".contains(c))),
        "decoded umlauts in some subject"
    );
    assert!(summaries.iter().filter(|s| !s.date.is_empty()).count() >= 20);

    let mut s = login(&st, &user, &token, Security::StartTls, false);
    let second = s.entries().unwrap();
    s.quit().unwrap();
    assert_eq!(first, second);
}

#[test]
fn dele_takes_effect_only_at_quit() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3");
    st.seed(&user, &["--count", "5"]);
    let token = st.mint(&user);

    let mut s = login(&st, &user, &token, Security::Tls, false);
    let before = s.entries().unwrap();
    assert_eq!(before.len(), 5);
    s.dele(1).unwrap();
    s.dele(2).unwrap();
    // Dropped without QUIT: nothing is deleted.
    drop(s);
    let mut s = login(&st, &user, &token, Security::Tls, false);
    assert_eq!(s.entries().unwrap(), before);
    s.dele(1).unwrap();
    s.quit().unwrap();
    let mut s = login(&st, &user, &token, Security::Tls, false);
    let after = s.entries().unwrap();
    s.quit().unwrap();
    let uids: Vec<&str> = after.iter().map(|e| e.uid.as_str()).collect();
    assert_eq!(after.len(), 4);
    assert!(!uids.contains(&before[0].uid.as_str()));
    assert_eq!(st.stored_messages(&user, None).len(), 4);
}

#[test]
fn oauthbearer_only_server() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3");
    st.seed(&user, &["--count", "2"]);
    let token = st.mint(&user);
    for security in [Security::Tls, Security::StartTls] {
        let mut s = login(&st, &user, &token, security, true);
        assert_eq!(s.entries().unwrap().len(), 2);
        s.quit().unwrap();
    }
}

#[test]
fn expired_and_revoked_tokens_are_refused() {
    let Some(st) = stack() else { return };
    for (i, revoke) in [false, true].into_iter().enumerate() {
        let user = unique_user(&format!("mbx-pop3-refused{i}"));
        let token = st.mint(&user);
        if revoke {
            st.revoke_tokens(&user);
        } else {
            st.expire_tokens(&user);
        }
        let ep = st.endpoint("pop3", Security::Tls, false);
        let mut s = Session::connect(&ep, &Interrupt::new(), Options::default()).unwrap();
        let e = s.authenticate(&user, &token, ep.port).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
        assert!(
            e.server_reply
                .as_deref()
                .unwrap_or_default()
                .contains("[AUTH]"),
            "{:?}",
            e.server_reply
        );
        assert!(e.hint.is_some());
        let debug = format!("{e:?}");
        assert!(!debug.contains(token.expose()));
        // OAUTHBEARER's error challenge is answered with \x01.
        let ep = st.endpoint("pop3", Security::Tls, true);
        let mut s = Session::connect(&ep, &Interrupt::new(), Options::default()).unwrap();
        let e = s.authenticate(&user, &token, ep.port).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
    }
}

#[test]
fn interrupt_cancels_a_session() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3");
    let token = st.mint(&user);
    let ep = st.endpoint("pop3", Security::Tls, false);
    let interrupt = Interrupt::new();
    let mut s = Session::connect(&ep, &interrupt, Options::default()).unwrap();
    s.authenticate(&user, &token, ep.port).unwrap();
    interrupt.fire();
    assert_eq!(s.noop().unwrap_err().kind, ErrorKind::Cancelled);
}

/// Throughput (run in release: `cargo test --release --test mailbox_pop3
/// -- --ignored --nocapture`): 2,000 messages of about 20 KB, pipelined
/// against one command at a time.
#[test]
#[ignore]
fn throughput() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-pop3-bench");
    st.seed(&user, &["--count", "2000", "--size", "20000"]);
    let token = st.mint(&user);
    for window in [1usize, 10, 50, 100] {
        let ep = st.endpoint("pop3", Security::Tls, false);
        let opts = Options {
            pipeline_window: window,
            ..Options::default()
        };
        let mut s = Session::connect(&ep, &Interrupt::new(), opts).unwrap();
        s.authenticate(&user, &token, ep.port).unwrap();
        let list: Vec<(u32, u64)> = s
            .entries()
            .unwrap()
            .iter()
            .map(|e| (e.msg, e.size))
            .collect();
        let started = Instant::now();
        let mut bytes = 0usize;
        s.retr_many(&list, |_, r| {
            bytes += r?.len();
            Ok(())
        })
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "POP3 window {window:>3}: {} messages, {bytes} B in {secs:.3} s ({:.0} msg/s, {:.1} MB/s)",
            list.len(),
            list.len() as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        s.quit().unwrap();
    }
}
