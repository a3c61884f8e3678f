//! Peak memory of a 50 MB message (a base64 attachment, seeded by
//! tests/stack/seed.py --big 50) fetched through the ABI's mailbox with
//! `fetch` and `fetch_to_file`, over IMAP and POP3, against Dovecot.
//!
//! The figure is the growth of the process's peak resident set (VmHWM in
//! /proc/self/status, reset through /proc/self/clear_refs before each
//! step) over the resident set before the step. This binary holds one test
//! only, so no other test's allocations count. The bounds are behavioural:
//! `fetch` holds the message once (at most one extra copy), `fetch_to_file`
//! never holds it whole.
//!
//!     cargo test --release --test mailbox_memory -- --nocapture

mod mailbox_support;
mod support;

use std::io::Read;

use mailbox_support::open::{context, request};
use mailbox_support::{stack, unique_user};
use mailoauth::mailbox::handle::Mailbox;
use serde_json::json;

const MB: u64 = 1024 * 1024;

fn status_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the peak; false when the kernel does not allow it.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Runs `f` and returns how far the peak resident set rose above the
/// resident set before it (bytes).
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    assert!(reset_peak(), "cannot reset VmHWM");
    let before = status_kb("VmRSS:").expect("VmRSS");
    let r = f();
    let peak = status_kb("VmHWM:").expect("VmHWM");
    (r, peak.saturating_sub(before) * 1024)
}

/// Compares a file with bytes held in memory, in chunks.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let mut x = vec![0u8; 1 << 20];
    let mut y = vec![0u8; 1 << 20];
    loop {
        let n = fa.read(&mut x).unwrap();
        let mut m = 0;
        while m < n {
            let k = fb.read(&mut y[m..n]).unwrap();
            if k == 0 {
                return false;
            }
            m += k;
        }
        if x[..n] != y[..n] {
            return false;
        }
        if n == 0 {
            return fb.read(&mut y).unwrap() == 0;
        }
    }
}

#[test]
fn a_50_mb_message_is_fetched_with_bounded_memory() {
    let Some(stack) = stack() else { return };
    if !reset_peak() {
        println!("skipped: /proc/self/clear_refs is not writable here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbmem");
    stack.seed(&user, &["--count", "0", "--big", "50"]);
    let stored = stack.maildir(&user, None).join("new");
    let stored = std::fs::read_dir(&stored)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("the seeded message");
    // A copy to compare with (Dovecot moves the file to cur/ on SELECT).
    let copy = dir.path().join("stored.eml");
    std::fs::copy(&stored, &copy).unwrap();
    let stored = copy;
    let size = std::fs::metadata(&stored).unwrap().len();
    assert!(size > 50 * 1_000_000, "{size}");
    let ctx = context(
        &stack,
        dir.path(),
        &user,
        json!({"limits": {"max_message_bytes": 128 * MB}}),
    );
    let mut report = Vec::new();
    for proto in ["imap", "pop3"] {
        let mb = Mailbox::open(&ctx, &request(&stack, &user, proto, "tls", json!({}))).unwrap();
        let list = mb.poll(10).unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        let id = list[0].id.clone();
        assert_eq!(list[0].size, size);

        let path = dir.path().join(format!("{proto}.eml"));
        let (r, to_file) = peak_growth(|| mb.fetch_to_file(&id, &path));
        r.unwrap();
        assert!(same_file(&path, &stored), "{proto}: file differs");

        let (bytes, in_memory) = peak_growth(|| mb.fetch(&id).unwrap());
        assert_eq!(bytes.len() as u64, size);
        std::fs::write(dir.path().join("mem.eml"), &bytes).unwrap();
        drop(bytes);
        assert!(same_file(&dir.path().join("mem.eml"), &stored));

        println!(
            "{proto}: message {size} B; peak RSS growth: fetch {:.1} MiB, fetch_to_file {:.1} MiB",
            in_memory as f64 / MB as f64,
            to_file as f64 / MB as f64
        );
        report.push((proto, in_memory, to_file));
        // fetch: the message once, at most one extra copy.
        assert!(
            in_memory < 2 * size + 16 * MB,
            "{proto}: fetch grew the peak by {in_memory} B for {size} B"
        );
        // fetch_to_file: streamed, never whole in memory.
        assert!(
            to_file < size / 4,
            "{proto}: fetch_to_file grew the peak by {to_file} B for {size} B"
        );
        mb.close();
    }
    assert_eq!(report.len(), 2);
}
