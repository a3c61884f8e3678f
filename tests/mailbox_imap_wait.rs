//! Waiting for mail (IDLE in chunks up to a deadline, cancel), read-ahead
//! and the UIDVALIDITY re-synchronisation index, against the stack's
//! Dovecot.

mod mailbox_support;
mod support;

use std::time::{Duration, Instant};

use mailbox_support::*;
use mailoauth::config::Security;
use mailoauth::error::ErrorKind;
use mailoauth::mailbox::imap::{Options, Session};
use mailoauth::mailbox::net::Interrupt;
use mailoauth::secret::Secret;

fn login(st: &Stack, user: &str, token: &Secret, interrupt: &Interrupt) -> Session {
    let ep = st.endpoint("imap", Security::Tls, false);
    Session::login(&ep, interrupt, Options::default(), user, token, "INBOX")
        .unwrap_or_else(|e| panic!("login: {e:?}"))
}

#[test]
fn new_mail_wakes_a_wait() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-idle");
    st.seed(&user, &["--count", "3"]);
    let token = st.mint(&user);
    let mut s = login(&st, &user, &token, &Interrupt::new());
    let before = s.uids_after(0).unwrap();
    assert_eq!(before.len(), 3);
    let last = *before.last().unwrap();
    let started = Instant::now();
    let woke = std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(1500));
            st.seed(&user, &["--count", "1", "--seed", "77"]);
        });
        s.idle_wait(Duration::from_secs(30)).unwrap()
    });
    let secs = started.elapsed().as_secs_f64();
    println!("woken after {secs:.3} s");
    assert!(woke);
    assert!((1.4..10.0).contains(&secs), "{secs}");
    assert_eq!(s.uids_after(last).unwrap().len(), 1);
    // Nothing new since: the next short wait times out.
    assert!(!s.idle_wait(Duration::from_secs(1)).unwrap());
    s.logout().unwrap();
}

#[test]
fn a_wait_with_nothing_returns_false_at_the_deadline() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-idle");
    st.seed(&user, &["--count", "1"]);
    let token = st.mint(&user);
    let mut s = login(&st, &user, &token, &Interrupt::new());
    let started = Instant::now();
    assert!(!s.idle_wait(Duration::from_secs(2)).unwrap());
    let secs = started.elapsed().as_secs_f64();
    println!("2 s wait returned after {secs:.3} s");
    assert!((1.99..3.0).contains(&secs), "{secs}");
    // The session goes on (the read timeout was restored; IDLE ended).
    assert_eq!(s.uids_after(0).unwrap().len(), 1);
    s.noop().unwrap();
    // A zero wait returns at once.
    let t = Instant::now();
    assert!(!s.idle_wait(Duration::ZERO).unwrap());
    assert!(t.elapsed() < Duration::from_millis(200));
    s.logout().unwrap();
}

#[test]
fn chunks_are_reissued_up_to_the_deadline_and_still_wake() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-idle");
    st.seed(&user, &["--count", "1"]);
    let token = st.mint(&user);
    let mut s = login(&st, &user, &token, &Interrupt::new());
    s.set_idle_chunk(Duration::from_secs(1));
    // Several IDLE / DONE rounds, no change: false at the deadline.
    let started = Instant::now();
    assert!(!s.idle_wait(Duration::from_millis(3500)).unwrap());
    let secs = started.elapsed().as_secs_f64();
    assert!((3.49..4.5).contains(&secs), "{secs}");
    // Mail in the third chunk wakes the wait.
    let started = Instant::now();
    let woke = std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(2500));
            st.seed(&user, &["--count", "1", "--seed", "78"]);
        });
        s.idle_wait(Duration::from_secs(20)).unwrap()
    });
    let secs = started.elapsed().as_secs_f64();
    println!("woken in a later chunk after {secs:.3} s");
    assert!(woke);
    assert!(secs < 12.0, "{secs}");
    assert_eq!(s.uids_after(0).unwrap().len(), 2);
    s.logout().unwrap();
}

#[test]
fn cancel_ends_a_wait_at_once() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-idle");
    let token = st.mint(&user);
    let interrupt = Interrupt::new();
    let mut s = login(&st, &user, &token, &interrupt);
    let started = Instant::now();
    let fired_at = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            interrupt.fire();
            Instant::now()
        });
        let r = s.idle_wait(Duration::from_secs(60));
        assert_eq!(r.unwrap_err().kind, ErrorKind::Cancelled);
        let back = Instant::now();
        let fired = h.join().unwrap();
        back.saturating_duration_since(fired)
    });
    println!(
        "cancelled: back {:.3} s after fire ({:.3} s in all)",
        fired_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(fired_at < Duration::from_secs(1));
    assert!(s.is_broken());
    // A cancel before the wait: Cancelled without waiting.
    let interrupt = Interrupt::new();
    let mut s = login(&st, &user, &token, &interrupt);
    interrupt.fire();
    let t = Instant::now();
    assert_eq!(
        s.idle_wait(Duration::from_secs(30)).unwrap_err().kind,
        ErrorKind::Cancelled
    );
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn read_ahead_fetches_the_next_messages_in_one_command() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-ahead");
    st.seed(&user, &["--count", "40", "--size", "5000", "--tricky"]);
    let token = st.mint(&user);
    let mut s = login(&st, &user, &token, &Interrupt::new());
    let uids = s.uids_after(0).unwrap();
    let sizes = s.sizes(&uids).unwrap();
    let mut expected = Vec::new();
    s.fetch_many(&sizes, |_, r| {
        expected.push(r?);
        Ok(())
    })
    .unwrap();
    s.set_read_ahead(&sizes);
    for (i, &(uid, size)) in sizes.iter().enumerate() {
        let body = s.fetch(uid).unwrap();
        assert_eq!(body.len() as u64, size);
        assert_eq!(body, expected[i], "UID {uid}");
        // After the first fetch, the rest of the poll is already here.
        if i == 0 {
            assert_eq!(s.prefetched(), sizes.len() - 1);
        }
    }
    assert_eq!(s.prefetched(), 0);
    // A message not in the list is fetched alone; a missing one is NotFound.
    assert_eq!(s.fetch(uids[3]).unwrap(), expected[3]);
    assert_eq!(
        s.fetch(uids.last().unwrap() + 100).unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Small windows: read-ahead stops at the window.
    let ep = st.endpoint("imap", Security::StartTls, false);
    let opts = Options {
        window_messages: 7,
        ..Options::default()
    };
    let mut s = Session::login(&ep, &Interrupt::new(), opts, &user, &token, "INBOX").unwrap();
    s.set_read_ahead(&sizes);
    assert_eq!(s.fetch(uids[0]).unwrap(), expected[0]);
    assert_eq!(s.prefetched(), 6);
    // Deleting forgets what was read ahead.
    s.delete(&uids[1..3]).unwrap();
    assert_eq!(s.prefetched(), 4);
    s.logout().unwrap();
}

#[test]
fn uidvalidity_change_keeps_message_ids_and_sizes() {
    let Some(st) = stack() else { return };
    let user = unique_user("mbx-resync");
    st.seed(&user, &["--count", "12", "--tricky"]);
    let token = st.mint(&user);
    let mut s = login(&st, &user, &token, &Interrupt::new());
    let v1 = s.uid_validity().unwrap();
    let started = Instant::now();
    let before = s.index().unwrap();
    println!(
        "index of {} in {:.3} s",
        before.len(),
        started.elapsed().as_secs_f64()
    );
    let uids = s.uids_after(0).unwrap();
    assert_eq!(before.iter().map(|e| e.uid).collect::<Vec<_>>(), uids);
    let sums = s.summaries(&uids).unwrap();
    for (e, sm) in before.iter().zip(&sums) {
        assert_eq!(e.size, sm.size);
        assert_eq!(e.message_id, sm.message_id, "UID {}", e.uid);
    }
    assert!(before.iter().filter(|e| !e.message_id.is_empty()).count() >= 12);
    assert!(before.iter().any(|e| e.message_id.is_empty()));
    s.logout().unwrap();

    // Recreate the folder on the server: Dovecot's UID list and indexes
    // go, the messages stay; a new message arrives.
    let dir = st.maildir(&user, None);
    std::thread::sleep(Duration::from_millis(1100));
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("dovecot-uidlist") || name.starts_with("dovecot.index") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    st.seed(&user, &["--count", "1", "--seed", "99"]);

    let mut s = login(&st, &user, &token, &Interrupt::new());
    let v2 = s.uid_validity().unwrap();
    assert_ne!(v1, v2, "UIDVALIDITY changed");
    let after = s.index().unwrap();
    assert_eq!(after.len(), before.len() + 1);
    // Every old message is found again by Message-ID and size.
    for e in &before {
        assert!(
            after
                .iter()
                .any(|a| a.message_id == e.message_id && a.size == e.size),
            "{e:?}"
        );
    }
    s.logout().unwrap();

    // An empty folder has an empty index.
    let empty = unique_user("mbx-resync-empty");
    let token = st.mint(&empty);
    let mut s = login(&st, &empty, &token, &Interrupt::new());
    assert!(s.index().unwrap().is_empty());
}
