//! SMTP sends through a small TCP fault proxy in front of the stack's
//! Postfix: a reset right after connect, a reset in the middle of DATA, a
//! stall. Each fault must end the send with a clear error (NETWORK, or
//! TIMEOUT within the request's timeout_ms; never a hang) and the next send
//! through the same context must work (no poisoned pooled connection).
//! `Context::cancel` from another thread interrupts a stalled send.
//!
//! The proxy listens on 127.0.0.1 and forwards TCP to the stack's mail host;
//! TLS stays end to end (the stack's certificate names 127.0.0.1 too), so
//! the context's `servers.smtp` is the proxy and the token may go there.

mod smtp_common;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mailoauth::Context;
use mailoauth::error::ErrorKind;
use serde_json::{Value, json};
use smtp_common::*;
use support::{authorize_decide, follow_to_listener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The one user of this file (no admin calls touch it).
const USER: &str = "bob@contoso.test";

// ---------------------------------------------------------------------------
// The fault proxy

/// A one-shot fault for the next connection or the next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The next accepted connection is reset at once (no greeting).
    ResetOnConnect,
    /// The connection carrying the client's byte number N (counted from
    /// arming, across connections) is reset after forwarding N bytes.
    ResetAfter(u64),
    /// Like `ResetAfter`, but everything stalls after byte number N.
    StallAfter(u64),
}

struct Shared {
    upstream: SocketAddr,
    fault: Mutex<(Fault, u64)>,
    /// While true, nothing is forwarded in either direction (new
    /// connections are accepted and then stall too).
    stalled: watch::Sender<bool>,
    /// Bumped to reset every live connection (a server dropping idle
    /// sessions).
    kill: watch::Sender<u64>,
    accepted: AtomicU64,
    resets: AtomicU64,
}

struct Proxy {
    addr: SocketAddr,
    sh: Arc<Shared>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sh = Arc::new(Shared {
            upstream,
            fault: Mutex::new((Fault::None, 0)),
            stalled: watch::channel(false).0,
            kill: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
        });
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy bind");
        let addr = listener.local_addr().unwrap();
        let sh2 = sh.clone();
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(serve(client, sh2.clone()));
            }
        });
        Proxy { addr, sh, _rt: rt }
    }

    fn arm(&self, f: Fault) {
        *self.sh.fault.lock().unwrap() = (f, 0);
    }

    fn armed(&self) -> Fault {
        self.sh.fault.lock().unwrap().0
    }

    fn stall(&self, on: bool) {
        self.sh.stalled.send_replace(on);
    }

    fn reset_all(&self) {
        self.sh.kill.send_modify(|g| *g += 1);
    }

    fn resets(&self) -> u64 {
        self.sh.resets.load(Ordering::SeqCst)
    }

    fn accepted(&self) -> u64 {
        self.sh.accepted.load(Ordering::SeqCst)
    }
}

/// Closes with RST instead of FIN.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

async fn serve(mut client: TcpStream, sh: Arc<Shared>) {
    sh.accepted.fetch_add(1, Ordering::SeqCst);
    let mut kill = sh.kill.subscribe();
    let mut stalled = sh.stalled.subscribe();
    {
        let mut f = sh.fault.lock().unwrap();
        if f.0 == Fault::ResetOnConnect {
            *f = (Fault::None, 0);
            drop(f);
            sh.resets.fetch_add(1, Ordering::SeqCst);
            reset(client);
            return;
        }
    }
    let Ok(mut server) = TcpStream::connect(sh.upstream).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        if *stalled.borrow_and_update() {
            tokio::select! {
                _ = stalled.changed() => continue,
                _ = kill.changed() => break,
            }
        }
        tokio::select! {
            _ = stalled.changed() => continue,
            _ = kill.changed() => break,
            r = client.read(&mut up) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                // How much of this chunk may pass before a reset or a stall.
                let cut = {
                    let mut f = sh.fault.lock().unwrap();
                    match f.0 {
                        Fault::ResetAfter(limit) | Fault::StallAfter(limit) => {
                            let before = f.1;
                            f.1 += n as u64;
                            if f.1 >= limit {
                                let stall = matches!(f.0, Fault::StallAfter(_));
                                *f = (Fault::None, 0);
                                Some(((limit - before) as usize, stall))
                            } else {
                                None
                            }
                        }
                        _ => None,
                    }
                };
                match cut {
                    Some((k, false)) => {
                        let _ = server.write_all(&up[..k]).await;
                        break;
                    }
                    Some((k, true)) => {
                        sh.stalled.send_replace(true);
                        if server.write_all(&up[..k]).await.is_err() {
                            return;
                        }
                        // The rest of the chunk waits until the stall ends.
                        tokio::select! {
                            _ = async { while stalled.changed().await.is_ok() && *stalled.borrow() {} } => {}
                            _ = kill.changed() => break,
                        }
                        if server.write_all(&up[k..n]).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    None => {}
                }
                if server.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            r = server.read(&mut down) => {
                let n = match r { Ok(0) | Err(_) => return, Ok(n) => n };
                if client.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    sh.resets.fetch_add(1, Ordering::SeqCst);
    reset(client);
    reset(server);
}

// ---------------------------------------------------------------------------
// Helpers

/// The stack's SMTP port for `security`, as a socket address.
fn upstream(stack: &Stack, security: &str) -> SocketAddr {
    format!("{}:{}", stack.smtp_host(), stack.smtp_port(security))
        .parse()
        .unwrap()
}

/// A context whose SMTP server is the proxy, signed in as [`USER`].
fn signed_in_via(
    stack: &Stack,
    dir: &std::path::Path,
    proxy: &Proxy,
    security: &str,
) -> Arc<Context> {
    let extra = json!({"servers": {"smtp": {
        "host": "127.0.0.1", "port": proxy.addr.port(), "security": security}}});
    let ctx = Arc::new(Context::new(stack.config(dir, security, extra)).unwrap());
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

fn request(to: &str, subject: &str, timeout_ms: Option<u64>, attachment: Option<&[u8]>) -> String {
    let mut m = json!({"to": [to], "subject": subject, "text": "Grüße vom Fehler-Proxy"});
    if let Some(a) = attachment {
        m["attachments"] = json!([{"name": "big.bin", "content_type": "application/octet-stream",
            "base64": base64::engine::general_purpose::STANDARD.encode(a)}]);
    }
    let mut r = json!({"account": USER, "message": m});
    if let Some(t) = timeout_ms {
        r["timeout_ms"] = json!(t);
    }
    r.to_string()
}

/// A send that must succeed; its message must arrive.
fn send_ok(stack: &Stack, ctx: &Context, to: &str, subject: &str) -> Value {
    let out = ctx
        .smtp_send(&request(to, subject, Some(20_000), None))
        .unwrap_or_else(|e| panic!("send {subject}: {:?} {}", e.kind, e.message.en));
    assert!(out["server_reply"].as_str().unwrap().starts_with("250"));
    stack.wait_for_mail(to, subject, Duration::from_secs(10));
    out
}

/// A send that must fail with `kind` within `limit`; returns the error.
fn send_fails(
    ctx: &Context,
    req: &str,
    kind: ErrorKind,
    limit: Duration,
) -> (mailoauth::Error, Duration) {
    let t0 = Instant::now();
    let e = ctx.smtp_send(req).expect_err("the send must fail");
    let took = t0.elapsed();
    eprintln!(
        "expected failure after {took:?}: {:?}: {}",
        e.kind, e.message.en
    );
    assert_eq!(e.kind, kind, "{:?}: {}", e.kind, e.message.en);
    assert!(took < limit, "took {took:?}, limit {limit:?}");
    (e, took)
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn a_reset_after_connect_is_a_network_error_and_the_next_send_works() {
    let Some(stack) = Stack::load() else { return };
    let proxy = Proxy::start(upstream(&stack, "starttls"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in_via(&stack, dir.path(), &proxy, "starttls");
    let tag = nonce();
    let to = format!("fault-rc-{tag}@contoso.test");

    // A fresh context: the first connection is reset before the greeting.
    proxy.arm(Fault::ResetOnConnect);
    let (e, _) = send_fails(
        &ctx,
        &request(&to, &format!("rc0 {tag}"), Some(5000), None),
        ErrorKind::Network,
        Duration::from_secs(5),
    );
    assert!(e.transient, "{}", e.message.en);
    assert!(e.message.en.contains("127.0.0.1"), "{}", e.message.en);
    assert_eq!(proxy.resets(), 1);
    send_ok(&stack, &ctx, &to, &format!("rc1 {tag}"));
    assert_eq!(ctx.smtp_stats().connections_opened, 1);

    // The server drops the pooled session: the next send notices before
    // MAIL FROM is answered and goes on a new connection, transparently.
    proxy.reset_all();
    support::eventually(Duration::from_secs(2), || {
        (proxy.resets() == 2).then_some(())
    });
    send_ok(&stack, &ctx, &to, &format!("rc2 {tag}"));
    assert_eq!(ctx.smtp_stats().connections_opened, 2);

    // The pooled session dies and the new one is reset at connect: the
    // error is NETWORK, and the pool holds nothing broken afterwards.
    proxy.reset_all();
    support::eventually(Duration::from_secs(2), || {
        (proxy.resets() == 3).then_some(())
    });
    proxy.arm(Fault::ResetOnConnect);
    send_fails(
        &ctx,
        &request(&to, &format!("rc3 {tag}"), Some(5000), None),
        ErrorKind::Network,
        Duration::from_secs(5),
    );
    assert_eq!(proxy.resets(), 4);
    assert_eq!(proxy.armed(), Fault::None);
    send_ok(&stack, &ctx, &to, &format!("rc4 {tag}"));
    let s = ctx.smtp_stats();
    assert_eq!(s.messages_sent, 3, "{s:?}");
    assert_eq!(stack.mail_count(&to), 3);
}

#[test]
fn a_reset_in_the_middle_of_data_is_a_network_error_and_nothing_is_retried() {
    let Some(stack) = Stack::load() else { return };
    // 600 KB of attachment (about 800 KB base64): a reset after 128 KB of
    // client bytes lands in DATA whatever the handshake took.
    let big: Vec<u8> = (0..600_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for security in ["starttls", "tls"] {
        let proxy = Proxy::start(upstream(&stack, security));
        let dir = tempfile::tempdir().unwrap();
        let ctx = signed_in_via(&stack, dir.path(), &proxy, security);
        let tag = nonce();
        let to = format!("fault-data-{tag}@contoso.test");
        let lost = format!("fault-data-lost-{tag}@contoso.test");

        // On a reused, authenticated connection.
        send_ok(&stack, &ctx, &to, &format!("d1 {tag}"));
        proxy.arm(Fault::ResetAfter(128 * 1024));
        let (e, _) = send_fails(
            &ctx,
            &request(&lost, &format!("d2 {tag}"), Some(10_000), Some(&big)),
            ErrorKind::Network,
            Duration::from_secs(10),
        );
        assert!(e.transient, "{}", e.message.en);
        assert_eq!(proxy.resets(), 1, "{security}");
        // DATA had started: no silent second attempt (it could duplicate).
        let s = ctx.smtp_stats();
        assert_eq!((s.connections_opened, s.messages_sent), (1, 1), "{s:?}");

        // The next send (the same big message) goes on a new connection.
        let out = ctx
            .smtp_send(&request(
                &to,
                &format!("d3 {tag}"),
                Some(20_000),
                Some(&big),
            ))
            .unwrap();
        assert!(out["server_reply"].as_str().unwrap().starts_with("250"));
        let got = stack.wait_for_mail(&to, &format!("d3 {tag}"), Duration::from_secs(10));
        let m = mail_parser::MessageParser::default().parse(&got).unwrap();
        assert_eq!(m.attachment(0).unwrap().contents(), big.as_slice());
        let s = ctx.smtp_stats();
        assert_eq!((s.connections_opened, s.messages_sent), (2, 2), "{s:?}");
        // And one more on the same (pooled) connection.
        send_ok(&stack, &ctx, &to, &format!("d4 {tag}"));
        assert_eq!(ctx.smtp_stats().connections_opened, 2);
        // The broken transfer was never delivered.
        assert_eq!(stack.mail_count(&lost), 0, "{security}");
    }
}

#[test]
fn a_stall_times_out_within_timeout_ms_and_the_next_send_works() {
    let Some(stack) = Stack::load() else { return };
    let proxy = Proxy::start(upstream(&stack, "starttls"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in_via(&stack, dir.path(), &proxy, "starttls");
    let tag = nonce();
    let to = format!("fault-stall-{tag}@contoso.test");
    send_ok(&stack, &ctx, &to, &format!("s1 {tag}"));

    // The pooled connection stalls at MAIL FROM.
    proxy.stall(true);
    let (e, took) = send_fails(
        &ctx,
        &request(&to, &format!("s2 {tag}"), Some(1500), None),
        ErrorKind::Timeout,
        Duration::from_millis(2500),
    );
    assert!(took >= Duration::from_millis(1400), "{took:?}");
    assert!(e.message.en.contains("1500 ms"), "{}", e.message.en);

    // Still stalled: a new connection gets no greeting.
    let accepted = proxy.accepted();
    send_fails(
        &ctx,
        &request(&to, &format!("s3 {tag}"), Some(1500), None),
        ErrorKind::Timeout,
        Duration::from_millis(2500),
    );
    assert_eq!(proxy.accepted(), accepted + 1);

    // A transfer that stalls in the middle of DATA (on the pooled
    // connection); the proxy then resets it, so that Postfix never sees
    // the end of the message.
    proxy.stall(false);
    send_ok(&stack, &ctx, &to, &format!("s4 {tag}"));
    let big = vec![b'x'; 3_000_000];
    proxy.arm(Fault::StallAfter(512 * 1024));
    let (e, took) = send_fails(
        &ctx,
        &request(&to, &format!("s5 {tag}"), Some(3000), Some(&big)),
        ErrorKind::Timeout,
        Duration::from_millis(4000),
    );
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert!(e.message.en.contains("3000 ms"), "{}", e.message.en);
    let resets = proxy.resets();
    proxy.reset_all();
    support::eventually(Duration::from_secs(2), || {
        (proxy.resets() > resets).then_some(())
    });
    proxy.stall(false);

    send_ok(&stack, &ctx, &to, &format!("s6 {tag}"));
    let s = ctx.smtp_stats();
    assert_eq!(s.messages_sent, 3, "{s:?}");
    assert!(
        !stack
            .maildir(&to)
            .join("new")
            .read_dir()
            .unwrap()
            .flatten()
            .any(|f| std::fs::read(f.path())
                .unwrap()
                .windows(3 + tag.len())
                .any(|w| w == format!("s5 {tag}").as_bytes())),
        "the stalled message must not arrive"
    );
}

#[test]
fn cancel_from_another_thread_interrupts_a_stalled_send() {
    let Some(stack) = Stack::load() else { return };
    let proxy = Proxy::start(upstream(&stack, "starttls"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = signed_in_via(&stack, dir.path(), &proxy, "starttls");
    let tag = nonce();
    let to = format!("fault-cancel-{tag}@contoso.test");
    send_ok(&stack, &ctx, &to, &format!("c1 {tag}"));

    for (i, fresh) in [false, true].into_iter().enumerate() {
        if fresh {
            // The pooled session dies: the send goes on a new connection,
            // which stalls waiting for the greeting.
            let resets = proxy.resets();
            proxy.reset_all();
            support::eventually(Duration::from_secs(2), || {
                (proxy.resets() > resets).then_some(())
            });
        }
        proxy.stall(true);
        let ctx2 = ctx.clone();
        let req = request(&to, &format!("c-stalled{i} {tag}"), None, None);
        let worker = std::thread::spawn(move || {
            let r = ctx2.smtp_send(&req);
            (r, Instant::now())
        });
        std::thread::sleep(Duration::from_millis(400));
        assert!(!worker.is_finished(), "the stalled send returned early");
        let cancelled_at = Instant::now();
        ctx.cancel();
        let (r, done_at) = worker.join().unwrap();
        let e = r.expect_err("cancelled");
        assert_eq!(e.kind, ErrorKind::Cancelled, "{}", e.message.en);
        let lag = done_at.saturating_duration_since(cancelled_at);
        assert!(lag < Duration::from_millis(500), "cancel took {lag:?}");
        proxy.stall(false);
        send_ok(&stack, &ctx, &to, &format!("c-after{i} {tag}"));
    }
    assert_eq!(ctx.smtp_stats().messages_sent, 3);
}
