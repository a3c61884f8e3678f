//! The IMAP session against the stack's Dovecot: implicit TLS and
//! STARTTLS, XOAUTH2 and OAUTHBEARER, bytes fetched equal bytes seeded,
//! summaries, \Seen set by STORE and not by PEEK, MOVE and the COPY
//! fallback into a folder with a space, delete with and without UIDPLUS,
//! refused tokens.

mod mailbox_support;
mod support;

use std::time::Instant;

use mailbox_support::*;
use mailoauth::config::Security;
use mailoauth::error::ErrorKind;
use mailoauth::mailbox::imap::{Options, Session};
use mailoauth::mailbox::net::Interrupt;
use mailoauth::secret::Secret;

fn login(st: &Stack, user: &str, token: &Secret, security: Security, ob: bool) -> Session {
    login_to(st, user, token, security, ob, "INBOX")
}

fn login_to(
    st: &Stack,
    user: &str,
    token: &Secret,
    security: Security,
    ob: bool,
    folder: &str,
) -> Session {
    let ep = st.endpoint("imap", security, ob);
    Session::login(
        &ep,
        &Interrupt::new(),
        Options::default(),
        user,
        token,
        folder,
    )
    .unwrap_or_else(|e| panic!("login: {e:?}"))
}

#[test]
fn fetch_everything_over_both_tls_modes() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-imap");
    st.seed(&user, &["--count", "300", "--size", "20000", "--tricky"]);
    let token = st.mint(&user);
    let mut expected: Vec<Vec<u8>> = st
        .stored_messages(&user, None)
        .iter()
        .map(|m| imap_normalised(m))
        .collect();
    expected.sort();

    for security in [Security::Tls, Security::StartTls] {
        let mut s = login(&st, &user, &token, security, false);
        let sel = s.selected().cloned().unwrap();
        assert_eq!(sel.exists as usize, expected.len());
        let uids = s.uids_after(0).unwrap();
        assert_eq!(uids.len(), expected.len());
        let sizes = s.sizes(&uids).unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        s.fetch_many(&sizes, |_, r| {
            got.push(r?);
            Ok(())
        })
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        let bytes: usize = got.iter().map(Vec::len).sum();
        println!(
            "IMAP {security:?}: {} messages, {bytes} B in {secs:.3} s ({:.0} msg/s, {:.1} MB/s, debug build)",
            got.len(),
            got.len() as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        for ((_, size), m) in sizes.iter().zip(&got) {
            assert_eq!(*size as usize, m.len());
        }
        got.sort();
        let differ = got.iter().zip(&expected).filter(|(a, b)| a != b).count();
        assert_eq!(differ, 0, "{differ} of {} messages differ", expected.len());
        // Nothing was marked \Seen by BODY.PEEK.
        assert!(!s.flags(uids[0]).unwrap().iter().any(|f| f.contains("Seen")));
        s.logout().unwrap();
    }
}

#[test]
fn summaries_ids_and_seen() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-imap");
    st.seed(&user, &["--count", "20", "--tricky"]);
    let token = st.mint(&user);

    let mut s = login(&st, &user, &token, Security::Tls, false);
    let validity = s.selected().unwrap().uid_validity;
    let uids = s.uids_after(0).unwrap();
    let started = Instant::now();
    let sums = s.summaries(&uids).unwrap();
    println!(
        "IMAP summaries: {} in {:.3} s",
        sums.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(sums.len(), uids.len());
    for (u, sm) in uids.iter().zip(&sums) {
        assert_eq!(sm.id, format!("{validity}:{u}"));
        assert!(sm.size > 0);
        assert!(!sm.date.is_empty(), "{sm:?}");
        assert!(sm.date.contains('T'));
    }
    assert!(
        sums.iter()
            .any(|s| s.subject.chars().any(|c| "äöüÄÖÜß".contains(c))),
        "decoded umlauts in some subject"
    );
    assert!(
        sums.iter().any(|s| s.message_id.is_empty()),
        "no Message-ID case"
    );
    assert!(
        sums.iter()
            .filter(|s| s.message_id.starts_with('<'))
            .count()
            >= 20
    );
    // Only new UIDs after the last one.
    let last = *uids.last().unwrap();
    assert!(s.uids_after(last).unwrap().is_empty());
    assert_eq!(s.uids_after(uids[uids.len() - 3]).unwrap().len(), 2);

    // PEEK leaves \Seen alone; STORE sets it.
    let body = s.fetch(uids[0]).unwrap();
    assert!(!body.is_empty());
    assert!(!s.flags(uids[0]).unwrap().iter().any(|f| f.contains("Seen")));
    s.mark_seen(&uids[..2]).unwrap();
    assert!(s.flags(uids[0]).unwrap().iter().any(|f| f.contains("Seen")));
    assert!(s.flags(uids[1]).unwrap().iter().any(|f| f.contains("Seen")));
    assert!(!s.flags(uids[2]).unwrap().iter().any(|f| f.contains("Seen")));
    s.logout().unwrap();

    // Ids are stable across connections.
    let mut s = login(&st, &user, &token, Security::StartTls, false);
    assert_eq!(s.selected().unwrap().uid_validity, validity);
    assert_eq!(s.uids_after(0).unwrap(), uids);
    assert!(s.flags(uids[0]).unwrap().iter().any(|f| f.contains("Seen")));
}

#[test]
fn move_copy_fallback_and_delete() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-imap");
    st.seed(&user, &["--count", "8"]);
    let token = st.mint(&user);

    let mut s = login(&st, &user, &token, Security::Tls, false);
    assert!(s.has_capability("MOVE") && s.has_capability("UIDPLUS"));
    let uids = s.uids_after(0).unwrap();
    assert_eq!(uids.len(), 8);
    // UID MOVE into a folder whose name has a space.
    s.move_to(&uids[..2], "Deleted Items").unwrap();
    // The COPY fallback (the crate does not quote COPY's folder: we do).
    s.disable_capability("MOVE");
    s.move_to(&uids[2..3], "Deleted Items").unwrap();
    // Delete with UID EXPUNGE, then without UIDPLUS.
    s.delete(&uids[3..4]).unwrap();
    s.disable_capability("UIDPLUS");
    s.delete(&uids[4..5]).unwrap();
    let left = s.uids_after(0).unwrap();
    assert_eq!(left, uids[5..].to_vec());
    assert_eq!(
        s.move_to(&uids[5..6], "No Such Folder").unwrap_err().kind,
        ErrorKind::NotFound
    );
    s.logout().unwrap();
    assert_eq!(st.stored_messages(&user, None).len(), 3);

    let mut s = login_to(&st, &user, &token, Security::Tls, false, "Deleted Items");
    assert_eq!(s.uids_after(0).unwrap().len(), 3);
    assert_eq!(
        s.select("No Such Folder").unwrap_err().kind,
        ErrorKind::NotFound
    );
}

#[test]
fn oauthbearer_only_server() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-imap");
    st.seed(&user, &["--count", "2"]);
    let token = st.mint(&user);
    for security in [Security::Tls, Security::StartTls] {
        let mut s = login(&st, &user, &token, security, true);
        assert_eq!(s.uids_after(0).unwrap().len(), 2);
        s.logout().unwrap();
    }
}

#[test]
fn expired_and_revoked_tokens_are_refused() {
    let Some(st) = stack() else { return };
    for (i, revoke) in [false, true].into_iter().enumerate() {
        let user = unique_user(&format!("mbx-imap-refused{i}"));
        let token = st.mint(&user);
        if revoke {
            st.revoke_tokens(&user);
        } else {
            st.expire_tokens(&user);
        }
        for ob in [false, true] {
            let ep = st.endpoint("imap", Security::Tls, ob);
            let e = Session::login(
                &ep,
                &Interrupt::new(),
                Options::default(),
                &user,
                &token,
                "INBOX",
            )
            .err()
            .expect("refused");
            assert_eq!(e.kind, ErrorKind::AuthRejected, "{e:?}");
            assert!(
                e.server_reply
                    .as_deref()
                    .unwrap_or_default()
                    .contains("[AUTHENTICATIONFAILED]"),
                "{:?}",
                e.server_reply
            );
            assert!(e.hint.is_some());
            assert!(!format!("{e:?}").contains(token.expose()));
        }
    }
}

#[test]
fn interrupt_cancels_a_session() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-imap");
    let token = st.mint(&user);
    let ep = st.endpoint("imap", Security::Tls, false);
    let interrupt = Interrupt::new();
    let mut s =
        Session::login(&ep, &interrupt, Options::default(), &user, &token, "INBOX").unwrap();
    interrupt.fire();
    assert_eq!(s.noop().unwrap_err().kind, ErrorKind::Cancelled);
}

/// The raw bound: one `UID FETCH 1:* (UID BODY.PEEK[])` on a connection
/// of its own, read to the end with the literal-aware reader (no windows,
/// everything held): (messages, bytes, seconds).
fn raw_bound(st: &Stack, user: &str, token: &Secret) -> (usize, usize, f64) {
    use mailoauth::mailbox::imap::resp::{Limits, Response, read_response};
    use mailoauth::mailbox::imap::wire::Buffered;
    use mailoauth::mailbox::sasl::Mechanism;
    use std::io::Write;

    let ep = st.endpoint("imap", Security::Tls, false);
    let stream = mailoauth::mailbox::net::connect(&ep, &Interrupt::new()).unwrap();
    let mut b = Buffered::new(stream);
    let limits = Limits {
        max_literal: 1 << 30,
    };
    let mut budget = u64::MAX;
    let mut until_tag = |b: &mut Buffered<_>, tag: &str| -> Vec<Response> {
        let mut out = Vec::new();
        loop {
            let r = read_response(b, limits, &mut budget)
                .unwrap()
                .expect("a response");
            if matches!(&r, Response::Tagged { tag: t, .. } if t == tag) {
                out.push(r);
                return out;
            }
            if matches!(&r, Response::Continue(_)) {
                return out;
            }
            out.push(r);
        }
    };
    let mut greeting = Vec::new();
    b.read_line(&mut greeting, 4096).unwrap();
    let send = |b: &mut Buffered<_>, l: &[u8]| {
        let s: &mut mailoauth::mailbox::net::Stream = b.get_mut();
        s.write_all(l).unwrap();
        s.flush().unwrap();
    };
    send(&mut b, b"r1 AUTHENTICATE XOAUTH2\r\n");
    until_tag(&mut b, "r1");
    let ir = Mechanism::XOAuth2.payload_b64(user, token, &ep.host, ep.port);
    send(&mut b, format!("{}\r\n", ir.as_str()).as_bytes());
    until_tag(&mut b, "r1");
    send(&mut b, b"r2 SELECT INBOX\r\n");
    until_tag(&mut b, "r2");
    let started = Instant::now();
    send(&mut b, b"r3 UID FETCH 1:* (UID BODY.PEEK[])\r\n");
    let mut kept = Vec::new();
    for r in until_tag(&mut b, "r3") {
        if let Response::Fetch(mut f) = r
            && let Some(body) = f.take_section("")
        {
            kept.push(body);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = kept.iter().map(Vec::len).sum();
    send(&mut b, b"r4 LOGOUT\r\n");
    (kept.len(), bytes, secs)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Throughput (run in release: `cargo test --release --test mailbox_imap
/// -- --ignored --nocapture`): messages of about 20 KB (2,000, or
/// `MAILOAUTH_BENCH_COUNT`; `MAILOAUTH_BENCH_USER` names an already seeded
/// user) fetched by the session in windows of 100 messages, 500 messages /
/// 16 MB (the default) and 500 / 4 MB, and with read-ahead (one `fetch`
/// per message), against the raw bound; the median of
/// `MAILOAUTH_BENCH_RUNS` (5) runs each. Lines starting with `BENCH` are
/// read by benches/mailbox_bench.py.
#[test]
#[ignore]
fn throughput() {
    let Some(st) = stack() else { return };
    let user = match std::env::var("MAILOAUTH_BENCH_USER") {
        Ok(u) => u,
        Err(_) => {
            let user = unique_user("mbx-imap-bench");
            let count = std::env::var("MAILOAUTH_BENCH_COUNT").unwrap_or_else(|_| "2000".into());
            st.seed(&user, &["--count", &count, "--size", "20000"]);
            user
        }
    };
    let runs: usize = std::env::var("MAILOAUTH_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let token = st.mint(&user);
    let configs: [(&str, usize, u64); 4] = [
        ("window 100 msgs / 16 MB", 100, 16 << 20),
        ("window 500 msgs / 16 MB", 500, 16 << 20),
        ("window 500 msgs / 4 MB", 500, 4 << 20),
        ("read-ahead 500 msgs / 16 MB", 500, 16 << 20),
    ];
    let mut raw_secs = Vec::new();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let mut total = (0usize, 0usize);
    for _ in 0..runs {
        let (n, bytes, secs) = raw_bound(&st, &user, &token);
        raw_secs.push(secs);
        total = (n, bytes);
        for (k, &(name, msgs, bytes_per)) in configs.iter().enumerate() {
            let ep = st.endpoint("imap", Security::Tls, false);
            let opts = Options {
                window_messages: msgs,
                window_bytes: bytes_per,
                ..Options::default()
            };
            let mut s =
                Session::login(&ep, &Interrupt::new(), opts, &user, &token, "INBOX").unwrap();
            let uids = s.uids_after(0).unwrap();
            let sizes = s.sizes(&uids).unwrap();
            let started = Instant::now();
            let mut got = (0usize, 0usize);
            if name.starts_with("read-ahead") {
                s.set_read_ahead(&sizes);
                for &(uid, _) in &sizes {
                    got.0 += 1;
                    got.1 += s.fetch(uid).unwrap().len();
                }
            } else {
                s.fetch_many(&sizes, |_, r| {
                    got.0 += 1;
                    got.1 += r?.len();
                    Ok(())
                })
                .unwrap();
            }
            times[k].push(started.elapsed().as_secs_f64());
            assert_eq!(got, (n, bytes), "{name}");
            s.logout().unwrap();
        }
    }
    let raw = median(&mut raw_secs);
    let (n, bytes) = total;
    println!(
        "IMAP raw bound (one UID FETCH 1:*): {n} bodies, {bytes} B in {raw:.3} s ({:.0} msg/s, {:.1} MB/s)",
        n as f64 / raw,
        bytes as f64 / raw / 1e6
    );
    println!("BENCH imap-raw {n} {bytes} {raw:.6}");
    for (k, &(name, _, _)) in configs.iter().enumerate() {
        let secs = median(&mut times[k]);
        println!(
            "IMAP {name}: {secs:.3} s ({:.0} msg/s, {:.1} MB/s) = {:.0} % of the raw bound",
            n as f64 / secs,
            bytes as f64 / secs / 1e6,
            raw / secs * 100.0
        );
        println!("BENCH imap-lib[{name}] {n} {bytes} {secs:.6}");
    }
}
