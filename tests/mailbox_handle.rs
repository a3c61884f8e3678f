//! The mailbox of the ABI end to end against the local stack (Dovecot and
//! the identity imitation): poll, fetch and ack in every mode over IMAP and
//! POP3 with implicit TLS and STARTTLS, bytes read back from the maildirs,
//! the state lock, `start: new`, wait and cancel, folders, and processes
//! killed between fetch and ack or in the middle of acks.
//!
//! Each test uses users of its own: the stack is shared with tests running
//! in parallel. Tokens are minted by the imitation (app tokens bound to the
//! user's mailbox) and put into a cache of the test's own.

mod mailbox_support;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailbox_support::open::{config_json, context, request, seed_grant};
use mailbox_support::{Stack, stack, unique_user};
use mailoauth::Context;
use mailoauth::error::ErrorKind;
use mailoauth::mailbox::handle::Mailbox;
use serde_json::{Value, json};

const CHILD_ENV: &str = "MAILOAUTH_MAILBOX_HANDLE_CHILD";

fn numeric_uid(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or(0)
}

fn every_mode(proto: &str, security: &str) {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user(&format!("mbh-{proto}-{security}"));
    stack.seed(&user, &["--count", "6", "--size", "3000"]);
    let ctx = context(&stack, dir.path(), &user, json!({}));
    let req = request(&stack, &user, proto, security, json!({}));
    let mb = Mailbox::open(&ctx, &req).unwrap();
    let list = mb.poll(100).unwrap();
    assert_eq!(list.len(), 6, "{list:?}");
    if proto == "imap" {
        let uids: Vec<u64> = list.iter().map(|s| numeric_uid(&s.id)).collect();
        let mut sorted = uids.clone();
        sorted.sort_unstable();
        assert_eq!(uids, sorted, "oldest first");
    }
    // Bytes fetched equal bytes stored (the seed writes CRLF files).
    let stored: BTreeSet<Vec<u8>> = stack.stored_messages(&user, None).into_iter().collect();
    let mut fetched = BTreeSet::new();
    for s in &list {
        let b = mb.fetch(&s.id).unwrap();
        assert_eq!(b.len() as u64, s.size, "size of {}", s.id);
        fetched.insert(b);
    }
    assert_eq!(fetched, stored);
    // Fetching did not set \Seen.
    if proto == "imap" {
        assert!(
            stack.stored_names(&user, None).iter().all(|n| !n
                .rsplit(":2,")
                .next()
                .unwrap_or("")
                .contains('S')),
        );
    }
    let file = dir.path().join("m.eml");
    mb.fetch_to_file(&list[4].id, &file).unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        mb.fetch(&list[4].id).unwrap()
    );
    assert_eq!(mb.fetch("999999:1").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(
        mb.ack(&list[0].id, "explode").unwrap_err().kind,
        ErrorKind::InvalidArgument
    );

    let actions: &[&str] = if proto == "imap" {
        &["keep", "seen", "delete", "move:Deleted Items", "keep"]
    } else {
        &["keep", "seen", "delete", "delete", "keep"]
    };
    for (s, a) in list.iter().zip(actions) {
        mb.ack(&s.id, a).unwrap();
        // Acknowledging twice is harmless.
        mb.ack(&s.id, a).unwrap();
    }
    if proto == "pop3" {
        assert_eq!(
            mb.ack(&list[5].id, "move:Archive").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }
    let again = mb.poll(100).unwrap();
    assert_eq!(
        again.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![list[5].id.clone()]
    );
    // What the server shows.
    let names = stack.stored_names(&user, None);
    if proto == "imap" {
        assert_eq!(names.len(), 4, "{names:?}");
        assert_eq!(
            names.iter().filter(|n| n.contains(":2,S")).count(),
            1,
            "{names:?}"
        );
        assert_eq!(stack.stored_names(&user, Some("Deleted Items")).len(), 1);
    } else {
        // The poll's QUIT committed both deletions.
        assert_eq!(names.len(), 4, "{names:?}");
    }
    mb.close();
    assert_eq!(mb.poll(10).unwrap_err().kind, ErrorKind::InvalidState);
    // Reopened (also from another context): acknowledged stay acknowledged.
    let ctx2 = context(&stack, dir.path(), &user, json!({}));
    let mb2 = Mailbox::open(&ctx2, &req).unwrap();
    let after = mb2.poll(100).unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, list[5].id);
    mb2.close();
}

#[test]
fn imap_tls_every_mode() {
    every_mode("imap", "tls");
}

#[test]
fn imap_starttls_every_mode() {
    every_mode("imap", "starttls");
}

#[test]
fn pop3_tls_every_mode() {
    every_mode("pop3", "tls");
}

#[test]
fn pop3_starttls_every_mode() {
    every_mode("pop3", "starttls");
}

#[test]
fn a_second_open_is_busy_and_start_new_skips_what_is_there() {
    let Some(stack) = stack() else { return };
    for proto in ["imap", "pop3"] {
        let dir = tempfile::tempdir().unwrap();
        let user = unique_user(&format!("mbh-busy-{proto}"));
        stack.seed(&user, &["--count", "3", "--seed", "1"]);
        let ctx = context(&stack, dir.path(), &user, json!({}));
        let req = request(&stack, &user, proto, "tls", json!({"start": "new"}));
        let mb = Mailbox::open(&ctx, &req).unwrap();
        assert!(mb.poll(10).unwrap().is_empty(), "start: new");
        // Another context on the same state: BUSY after the wait allowed.
        let other = context(&stack, dir.path(), &user, json!({}));
        let t = Instant::now();
        let busy = request(&stack, &user, proto, "tls", json!({"lock_timeout_ms": 300}));
        assert_eq!(
            Mailbox::open(&other, &busy).unwrap_err().kind,
            ErrorKind::Busy
        );
        assert!(t.elapsed() >= Duration::from_millis(250));
        // New mail after the first open is delivered.
        stack.seed(&user, &["--count", "2", "--seed", "2"]);
        assert_eq!(mb.poll(10).unwrap().len(), 2);
        mb.close();
        // `start: new` applies to the first open only.
        let mb = Mailbox::open(&other, &req).unwrap();
        assert_eq!(mb.poll(10).unwrap().len(), 2);
        mb.close();
    }
}

#[test]
fn bad_requests_are_refused_before_connecting() {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbh-bad");
    let ctx = context(&stack, dir.path(), &user, json!({}));
    let kind = |j: &str| Mailbox::open(&ctx, j).unwrap_err().kind;
    assert_eq!(
        kind(&json!({"account": user, "server": {"host": "imap.evil.example"}}).to_string()),
        ErrorKind::UntrustedHost
    );
    assert_eq!(
        kind(&json!({"account": user, "x": 1}).to_string()),
        ErrorKind::InvalidConfig
    );
    assert_eq!(kind("not json"), ErrorKind::InvalidConfig);
    assert_eq!(
        kind(&request(
            &stack,
            &user,
            "imap",
            "tls",
            json!({"folder": "No Such Folder"})
        )),
        ErrorKind::NotFound
    );
    // A token for another mailbox is refused by the server; the forced
    // refresh then finds no refresh token in this test's grant.
    assert_eq!(
        kind(&request(
            &stack,
            &user,
            "imap",
            "tls",
            json!({"mailbox": "someone-else@contoso.test"})
        )),
        ErrorKind::ConsentRequired
    );
}

#[test]
fn limits_folders_and_a_moved_mailbox() {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbh-limits");
    stack.seed(&user, &["--count", "2", "--size", "20000"]);
    let ctx = context(
        &stack,
        dir.path(),
        &user,
        json!({"limits": {"max_message_bytes": 5000}}),
    );
    for proto in ["imap", "pop3"] {
        let mb = Mailbox::open(&ctx, &request(&stack, &user, proto, "tls", json!({}))).unwrap();
        let list = mb.poll(10).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(mb.fetch(&list[0].id).unwrap_err().kind, ErrorKind::TooLarge);
        assert_eq!(mb.fetch(&list[1].id).unwrap_err().kind, ErrorKind::TooLarge);
        // The mailbox still works after the refusals.
        assert_eq!(mb.poll(10).unwrap().len(), 2);
        if proto == "imap" {
            let folders = mb.list_folders().unwrap();
            let find = |n: &str| folders.iter().find(|f| f.name == n).cloned();
            assert_eq!(find("INBOX").unwrap().special.as_deref(), Some("inbox"));
            assert_eq!(find("Sent Items").unwrap().special.as_deref(), Some("sent"));
            assert_eq!(
                find("Deleted Items").unwrap().special.as_deref(),
                Some("trash")
            );
            assert_eq!(find("Junk").unwrap().special.as_deref(), Some("junk"));
            assert_eq!(find("INBOX").unwrap().delimiter.as_deref(), Some("/"));
        } else {
            assert_eq!(mb.list_folders().unwrap_err().kind, ErrorKind::InvalidState);
        }
        mb.close();
    }
}

#[test]
fn wait_sees_new_mail_times_out_and_is_cancelled() {
    let Some(stack) = stack() else { return };
    for proto in ["imap", "pop3"] {
        let dir = tempfile::tempdir().unwrap();
        let user = unique_user(&format!("mbh-wait-{proto}"));
        let ctx = context(&stack, dir.path(), &user, json!({}));
        let mb = Mailbox::open(&ctx, &request(&stack, &user, proto, "tls", json!({}))).unwrap();
        assert!(
            !mb.wait(Duration::from_millis(300)).unwrap(),
            "no mail: timeout"
        );
        // Mail arriving during the wait ends it.
        let (st, u) = (stack.v.clone(), user.clone());
        let seeder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            let s = Stack {
                v: st,
                config: mailoauth::config::parse(
                    r#"{"client_id":"00000000-0000-0000-0000-0000000000a1"}"#,
                )
                .unwrap()
                .config,
            };
            s.seed(&u, &["--count", "1"]);
        });
        let t = Instant::now();
        assert!(mb.wait(Duration::from_secs(20)).unwrap(), "new mail");
        assert!(t.elapsed() < Duration::from_secs(12), "{:?}", t.elapsed());
        seeder.join().unwrap();
        let list = mb.poll(10).unwrap();
        assert_eq!(list.len(), 1);
        // Unacknowledged mail there: wait returns at once.
        assert!(mb.wait(Duration::from_secs(5)).unwrap());
        mb.ack(&list[0].id, "keep").unwrap();
        // Cancel from another thread.
        let mb2 = mb.clone();
        let waiter = std::thread::spawn(move || {
            let t = Instant::now();
            (mb2.wait(Duration::from_secs(30)), t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(700));
        mb.cancel();
        let (r, took) = waiter.join().unwrap();
        assert_eq!(r.unwrap_err().kind, ErrorKind::Cancelled);
        assert!(took < Duration::from_secs(3), "{took:?}");
        // The next call reconnects and works; a cancel without a call
        // changes nothing.
        mb.cancel();
        assert!(mb.poll(10).unwrap().is_empty());
        // Cancelling the context cancels the mailbox's call too.
        let (mb3, c3) = (mb.clone(), ctx.clone());
        let waiter = std::thread::spawn(move || mb3.wait(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(500));
        c3.cancel();
        assert_eq!(
            waiter.join().unwrap().unwrap_err().kind,
            ErrorKind::Cancelled
        );
        mb.close();
    }
}

/// A token the server rejects (expired there, fresh in the cache) gets one
/// forced refresh and the login is retried: carol signs in for real (a
/// refresh token), her access tokens are expired on the imitation.
#[test]
fn a_rejected_token_is_refreshed_once_and_the_login_retried() {
    let Some(stack) = stack() else { return };
    let user = "carol@contoso.test";
    let dir = tempfile::tempdir().unwrap();
    let cfg = mailoauth::config::parse(&config_json(&stack, dir.path(), json!({})))
        .unwrap()
        .config;
    let ctx = Arc::new(Context::new(cfg).unwrap());
    let req =
        json!({"account": user, "protocols": ["imap", "pop3"], "flow": "browser"}).to_string();
    let op = ctx.consent_begin(&req).unwrap();
    let url = op.info()["authorize_url"].as_str().unwrap().to_string();
    let location = support::authorize_decide(&url, true, Some(user));
    assert_eq!(support::follow_to_listener(&location).status, 200);
    ctx.consent_settle(&op, Duration::from_secs(20))
        .expect("finished")
        .unwrap();
    let refreshes = || {
        let port = url::Url::parse(stack.v["idp"]["http"].as_str().unwrap())
            .unwrap()
            .port()
            .unwrap();
        let r = support::http_request("GET", port, "/admin/counters", None, &[]);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        v["token"]["refresh_token"].as_u64().unwrap()
    };
    for proto in ["imap", "pop3"] {
        let before = refreshes();
        let open = request(&stack, user, proto, "tls", json!({"start": "new"}));
        let mb = Mailbox::open(&ctx, &open).unwrap();
        mb.poll(10).unwrap();
        stack.expire_tokens(user);
        if proto == "imap" {
            // A new session logs in with the cached (now expired) token.
            mb.close();
            let mb = Mailbox::open(&ctx, &open).unwrap();
            mb.poll(10).unwrap();
            mb.close();
        } else {
            // Every POP3 poll logs in again.
            mb.poll(10).unwrap();
            mb.close();
        }
        assert!(refreshes() > before, "{proto}: the token was refreshed");
    }
}

// ---- a connection dropped in the middle of a FETCH / RETR ----

/// A TCP proxy that cuts a connection once armed and `budget` more bytes
/// went from the server to the client.
struct Cutter {
    armed: std::sync::atomic::AtomicBool,
    budget: std::sync::atomic::AtomicI64,
    cuts: std::sync::atomic::AtomicU32,
}

fn cutting_proxy(upstream: std::net::SocketAddr) -> (u16, Arc<Cutter>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::Ordering::SeqCst;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cut = Arc::new(Cutter {
        armed: false.into(),
        budget: 0.into(),
        cuts: 0.into(),
    });
    let c = cut.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = c_in.read(&mut buf) {
                    if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let c = c.clone();
            std::thread::spawn(move || {
                let (mut s_in, mut c_out) = (server, client);
                let mut buf = [0u8; 16384];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if c.armed.load(SeqCst) && c.budget.fetch_sub(n as i64, SeqCst) <= n as i64 {
                        c.armed.store(false, SeqCst);
                        c.cuts.fetch_add(1, SeqCst);
                        let _ = c_out.shutdown(Shutdown::Both);
                        let _ = s_in.shutdown(Shutdown::Both);
                        return;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    (port, cut)
}

#[test]
fn a_connection_dropped_in_the_middle_of_a_fetch_is_a_clear_error_and_nothing_is_lost() {
    use std::net::ToSocketAddrs;
    use std::sync::atomic::Ordering::SeqCst;
    let Some(stack) = stack() else { return };
    for proto in ["imap", "pop3"] {
        let dir = tempfile::tempdir().unwrap();
        let user = unique_user(&format!("mbh-cut-{proto}"));
        stack.seed(&user, &["--count", "3", "--size", "1000000"]);
        let ctx = context(
            &stack,
            dir.path(),
            &user,
            json!({"trusted_hosts": ["127.0.0.1"]}),
        );
        let host = stack.v[proto]["host"].as_str().unwrap();
        let port = stack.v[proto]["tls"].as_u64().unwrap() as u16;
        let upstream = (host, port).to_socket_addrs().unwrap().next().unwrap();
        let (proxy, cut) = cutting_proxy(upstream);
        let req = json!({"account": user, "protocol": proto,
            "server": {"host": "127.0.0.1", "port": proxy, "security": "tls"}})
        .to_string();
        let mb = Mailbox::open(&ctx, &req).unwrap();
        let list = mb.poll(10).unwrap();
        assert_eq!(list.len(), 3);
        cut.budget.store(400_000, SeqCst);
        cut.armed.store(true, SeqCst);
        let e = mb.fetch(&list[0].id).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Network, "{proto}: {}", e.message.en);
        assert_eq!(cut.cuts.load(SeqCst), 1);
        // The next calls reconnect: every message is there, bytes intact.
        let again = mb.poll(10).unwrap();
        assert_eq!(again, list);
        let stored: BTreeSet<Vec<u8>> = stack.stored_messages(&user, None).into_iter().collect();
        let fetched: BTreeSet<Vec<u8>> = list.iter().map(|s| mb.fetch(&s.id).unwrap()).collect();
        assert_eq!(fetched, stored);
        // Cut during the ack's server change: acknowledged all the same,
        // the change is finished at the next poll.
        cut.budget.store(0, SeqCst);
        cut.armed.store(true, SeqCst);
        let _ = mb.ack(&list[0].id, "delete");
        cut.armed.store(false, SeqCst);
        let left = mb.poll(10).unwrap();
        assert_eq!(left.len(), 2, "{proto}");
        assert!(left.iter().all(|s| s.id != list[0].id));
        mb.poll(10).unwrap();
        mb.close();
        assert_eq!(
            stack.stored_names(&user, None).len(),
            2,
            "{proto}: deleted at last"
        );
    }
}

// ---- processes killed between fetch and ack, and during acks ----

/// The child: opens the mailbox and follows `MAILOAUTH_MAILBOX_HANDLE_CHILD`
/// (`fetch` polls and fetches everything, then reports and sleeps; `ack`
/// acks with delete one by one, logging before and after each).
#[test]
fn child_worker() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let Some(stack) = stack() else { return };
    let dir = std::path::PathBuf::from(std::env::var("MBH_DIR").unwrap());
    let user = std::env::var("MBH_USER").unwrap();
    let proto = std::env::var("MBH_PROTO").unwrap();
    let log = dir.join("child.log");
    let cfg = mailoauth::config::parse(&config_json(&stack, &dir.join("cache"), json!({})))
        .unwrap()
        .config;
    let ctx = Arc::new(Context::new(cfg).unwrap());
    let mb = Mailbox::open(&ctx, &request(&stack, &user, &proto, "tls", json!({}))).unwrap();
    let append = |line: String| {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writeln!(f, "{line}").unwrap();
        f.sync_all().unwrap();
    };
    let list = mb.poll(1000).unwrap();
    if mode == "fetch" {
        for s in &list {
            mb.fetch(&s.id).unwrap();
        }
        append("fetched".into());
    } else {
        for s in &list {
            append(format!("start {}", s.id));
            mb.ack(&s.id, "delete").unwrap();
            append(format!("done {}", s.id));
        }
        append("all".into());
    }
    std::thread::sleep(Duration::from_secs(60));
}

fn spawn_child(mode: &str, dir: &Path, user: &str, proto: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_worker",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, mode)
        .env("MBH_DIR", dir)
        .env("MBH_USER", user)
        .env("MBH_PROTO", proto)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("child.log")).unwrap_or_default()
}

fn wait_for_log(dir: &Path, pred: impl Fn(&str) -> bool, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pred(&read_log(dir)) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the child ended early: {status}");
        }
        assert!(Instant::now() < deadline, "the child did not get there");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_between_fetch_and_ack_or_during_acks_loses_nothing() {
    let Some(stack) = stack() else { return };
    for proto in ["imap", "pop3"] {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).unwrap();
        let user = unique_user(&format!("mbh-kill-{proto}"));
        stack.seed(&user, &["--count", "40", "--size", "2000"]);
        seed_grant(&stack, &cache, &user);

        // Killed after fetching, before any ack: everything comes back.
        let mut child = spawn_child("fetch", dir.path(), &user, proto);
        wait_for_log(dir.path(), |l| l.contains("fetched"), &mut child);
        child.kill().unwrap();
        child.wait().unwrap();
        let cfg = mailoauth::config::parse(&config_json(&stack, &cache, json!({})))
            .unwrap()
            .config;
        let ctx = Arc::new(Context::new(cfg).unwrap());
        let req = request(&stack, &user, proto, "tls", json!({}));
        let mb = Mailbox::open(&ctx, &req).unwrap();
        let all: BTreeSet<String> = mb.poll(1000).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(all.len(), 40);
        mb.close();

        // Killed in the middle of the acks.
        let _ = std::fs::remove_file(dir.path().join("child.log"));
        let mut child = spawn_child("ack", dir.path(), &user, proto);
        wait_for_log(
            dir.path(),
            |l| l.lines().filter(|x| x.starts_with("start ")).count() >= 15,
            &mut child,
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let log = read_log(dir.path());
        let started: BTreeSet<String> = log
            .lines()
            .filter_map(|l| l.strip_prefix("start ").map(str::to_string))
            .collect();
        let done: BTreeSet<String> = log
            .lines()
            .filter_map(|l| l.strip_prefix("done ").map(str::to_string))
            .collect();
        assert!(!done.is_empty() && done.len() < 40, "{log}");
        let mb = Mailbox::open(&ctx, &req).unwrap();
        let back: BTreeSet<String> = mb.poll(1000).unwrap().into_iter().map(|s| s.id).collect();
        // No acknowledged message returns …
        assert!(back.is_disjoint(&done), "acknowledged came back");
        // … and nothing is lost: what is not back had its ack started.
        for id in all.difference(&back) {
            assert!(started.contains(id), "{id} vanished without an ack");
        }
        // Pending deletions are finished: after the next poll (POP3: its
        // QUIT) every acknowledged message is gone from the server.
        let again: BTreeSet<String> = mb.poll(1000).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(again, back);
        mb.close();
        let left = stack.stored_names(&user, None).len();
        assert_eq!(left, back.len(), "server copies of acknowledged deletions");
    }
}

#[test]
fn later_polls_of_a_session_see_new_mail_and_skip_what_went() {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbh-incr");
    stack.seed(&user, &["--count", "5", "--size", "2000"]);
    let ctx = context(&stack, dir.path(), &user, json!({}));
    let mb = Mailbox::open(&ctx, &request(&stack, &user, "imap", "tls", json!({}))).unwrap();
    let list = mb.poll(100).unwrap();
    assert_eq!(list.len(), 5);
    mb.ack(&list[0].id, "keep").unwrap();
    mb.ack(&list[1].id, "delete").unwrap();
    // New mail, and one unacknowledged message expunged by another client.
    stack.seed(&user, &["--count", "3", "--size", "2000", "--seed", "99"]);
    let ep = stack.endpoint("imap", mailoauth::config::Security::Tls, false);
    let mut other = mailoauth::mailbox::imap::Session::login(
        &ep,
        &mailoauth::mailbox::net::Interrupt::new(),
        Default::default(),
        &user,
        &stack.mint(&user),
        "INBOX",
    )
    .unwrap();
    other.delete(&[numeric_uid(&list[2].id) as u32]).unwrap();
    other.logout().unwrap();

    assert_eq!(mb.poll(1).unwrap()[0].id, list[3].id, "oldest first");
    let again = mb.poll(100).unwrap();
    let ids: Vec<u64> = again.iter().map(|s| numeric_uid(&s.id)).collect();
    assert_eq!(again.len(), 5, "{again:?}");
    assert_eq!(&again[..2], &list[3..5]);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[2] > numeric_uid(&list[4].id));
    assert!(mb.wait(Duration::from_millis(100)).unwrap());
    for s in &again {
        mb.ack(&s.id, "keep").unwrap();
    }
    assert!(mb.poll(100).unwrap().is_empty());
    assert!(!mb.wait(Duration::from_millis(300)).unwrap());
    stack.seed(&user, &["--count", "1", "--size", "2000", "--seed", "7"]);
    let last = mb.poll(100).unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    assert!(numeric_uid(&last[0].id) > ids[4]);
    mb.close();
}
