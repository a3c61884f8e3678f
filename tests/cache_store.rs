//! The token cache against real files, real processes and a fake host
//! store: formats and protections, permissions, damage that is never
//! overwritten, atomic replacement, cross-process locking and SIGKILL.
//!
//! Child processes are this test binary run again with
//! `MAILOAUTH_CACHE_TEST_CHILD` set (see `child_process_entry`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailoauth::cache::{
    AccessToken, BlobStore, Codec, FileStore, Grant, GrantState, GrantStore, HostCallbacks,
    HostStore, Stamp,
};
use mailoauth::config::{CacheConfig, Protection};
use mailoauth::protocol::Protocols;
use mailoauth::secret::Secret;
use mailoauth::{Error, ErrorKind};

const CHILD_ENV: &str = "MAILOAUTH_CACHE_TEST_CHILD";
const DIR_ENV: &str = "MAILOAUTH_CACHE_TEST_DIR";
const HOST_KEY: [u8; 32] = [0x42; 32];
const ACCOUNT: &str = "alice@contoso.com";
const COUNTER_KEY: &str = "poll:alice@contoso.com/imap/INBOX";

fn grant(account: &str, pad: usize) -> Grant {
    Grant {
        account: account.to_string(),
        username: Some(account.to_string()),
        tenant_id: Some("tid".into()),
        oid: Some("oid".into()),
        protocols: Protocols::ALL,
        app: false,
        refresh_token: Some(Secret::new(format!("RT-SECRET-{}", "r".repeat(pad)))),
        access_token: Some(AccessToken {
            token: Secret::new("AT-SECRET"),
            issued_at: 1_767_225_600,
            expires_at: 1_767_229_200,
            protocols: Protocols::ALL,
        }),
        state: GrantState::Ok,
        since: 1_767_225_600,
        not_before: None,
        last_error: None,
    }
}

fn json(g: &Grant) -> serde_json::Value {
    serde_json::to_value(g).expect("grant serialises")
}

fn store_in(dir: &Path, protection: Protection) -> GrantStore {
    let key = (protection == Protection::Key).then_some(&HOST_KEY[..]);
    let cfg = CacheConfig {
        path: Some(dir.to_path_buf()),
        protection,
    };
    GrantStore::for_folder(&cfg, key).expect("store opens")
}

fn kind<T>(r: Result<T, Error>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

const LINUX_PROTECTIONS: [Protection; 4] = [
    Protection::None,
    Protection::Key,
    Protection::User,
    Protection::Machine,
];

#[test]
fn round_trip_with_every_protection() {
    for protection in LINUX_PROTECTIONS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("cache");
        let store = store_in(&dir, protection);
        assert_eq!(store.stamp(ACCOUNT), Some(Stamp(0)));
        assert!(store.load(ACCOUNT).expect("load").is_none());

        let g = grant(ACCOUNT, 100);
        store.save(&g).expect("save");
        let back = store.load(ACCOUNT).expect("load").expect("present");
        assert_eq!(json(&back), json(&g), "{protection:?}");
        let s1 = store.stamp(ACCOUNT).expect("stamp");
        assert_ne!(s1, Stamp(0));
        assert_eq!(store.stamp(ACCOUNT), Some(s1), "unchanged blob, same stamp");

        let bob = grant("Bob@Contoso.com", 10);
        store.save(&bob).expect("save bob");
        store.save(&g).expect("save again");
        assert_ne!(store.stamp(ACCOUNT), Some(s1), "rewritten blob, new stamp");
        let mut accounts: Vec<String> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|g| g.account)
            .collect();
        accounts.sort();
        assert_eq!(accounts, ["Bob@Contoso.com", ACCOUNT]);

        // Other record kinds, with a folder name that needs escaping.
        let key = "poll:alice@contoso.com/imap/Gesendete Elemente/Ä";
        store
            .save_raw(key, &(7u32, "uidvalidity"))
            .expect("save raw");
        let raw: (u32, String) = store.load_raw(key).expect("load raw").expect("present");
        assert_eq!(raw, (7, "uidvalidity".to_string()));
        assert_eq!(store.blobs().keys("poll:").expect("keys"), [key]);

        // A fresh store on the same folder reads everything back.
        let again = store_in(&dir, protection);
        assert_eq!(
            json(&again.load(ACCOUNT).expect("load").expect("present")),
            json(&g)
        );

        store.remove(ACCOUNT).expect("remove");
        store.remove(ACCOUNT).expect("remove twice");
        assert!(store.load(ACCOUNT).expect("load").is_none());
        assert_eq!(store.stamp(ACCOUNT), Some(Stamp(0)));
        assert_eq!(store.list().expect("list").len(), 1);
    }
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn files_are_private_and_say_what_they_are() {
    for (protection, dir_mode, file_mode) in [
        (Protection::User, 0o700, 0o600),
        (Protection::None, 0o700, 0o600),
        (Protection::Key, 0o700, 0o600),
        (Protection::Machine, 0o770, 0o640),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("deeper").join("mailoauth");
        let store = store_in(&dir, protection);
        store.save(&grant(ACCOUNT, 10)).expect("save");
        let _lock = store.lock(ACCOUNT, Duration::ZERO).expect("lock");

        assert_eq!(mode(&dir), dir_mode, "{protection:?} folder");
        let blob_path = dir.join("grant%3Aalice@contoso.com.blob");
        assert_eq!(mode(&blob_path), file_mode, "{protection:?} blob");
        let lock_path = dir.join("grant%3Aalice@contoso.com.lock");
        assert!(lock_path.exists());
        let key_file = dir.join("mailoauth.key");
        match protection {
            Protection::User | Protection::Machine => {
                assert_eq!(mode(&key_file), file_mode, "{protection:?} key file");
                assert_eq!(std::fs::metadata(&key_file).expect("key").len(), 32);
            }
            _ => assert!(!key_file.exists()),
        }

        let bytes = std::fs::read(&blob_path).expect("read");
        let header_end = bytes.iter().position(|&b| b == b'\n').expect("header");
        let header = std::str::from_utf8(&bytes[..header_end]).expect("ascii");
        let text = String::from_utf8_lossy(&bytes);
        if protection == Protection::None {
            assert_eq!(header, "mailoauth-cache/1 protection=none alg=none");
            assert!(text.contains("RT-SECRET"));
        } else {
            assert!(
                header.starts_with(&format!(
                    "mailoauth-cache/1 protection={} alg=xchacha20poly1305 kcv=",
                    protection.as_str()
                )),
                "{header}"
            );
            assert!(!text.contains("RT-SECRET") && !text.contains(ACCOUNT));
        }
    }
}

#[test]
fn a_different_key_is_corrupt_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = store_in(tmp.path(), Protection::Key);
    a.save(&grant(ACCOUNT, 10)).expect("save");
    let path = FileStore::open(tmp.path(), Protection::Key)
        .expect("open")
        .blob_path(&mailoauth::cache::grant_key(ACCOUNT))
        .expect("path");
    let before = std::fs::read(&path).expect("read");

    let codec = Codec::new(Protection::Key, None)
        .and_then(|c| c.with_key(&[9; 32]))
        .expect("codec");
    let blobs = Arc::new(FileStore::open(tmp.path(), Protection::Key).expect("open"));
    let b = GrantStore::new(blobs, codec);
    let e = b.load(ACCOUNT).expect_err("wrong key");
    assert_eq!(e.kind, ErrorKind::CacheCorrupt);
    assert!(e.message.en.contains("different key"), "{}", e.message.en);
    assert_eq!(kind(b.save(&grant(ACCOUNT, 20))), ErrorKind::CacheCorrupt);
    assert_eq!(kind(b.list()), ErrorKind::CacheCorrupt);
    assert_eq!(std::fs::read(&path).expect("read"), before);

    // The protection must match too.
    let none = store_in(tmp.path(), Protection::None);
    let e = none.load(ACCOUNT).expect_err("other protection");
    assert_eq!(e.kind, ErrorKind::CacheCorrupt);
    assert!(e.message.en.contains("'key'"), "{}", e.message.en);

    // And a key protection without a key is the host's mistake.
    let unkeyed = GrantStore::new(
        Arc::new(FileStore::open(tmp.path(), Protection::Key).expect("open")),
        Codec::new(Protection::Key, None).expect("codec"),
    );
    assert_eq!(kind(unkeyed.load(ACCOUNT)), ErrorKind::InvalidState);
    assert_eq!(std::fs::read(&path).expect("read"), before);
}

#[test]
fn a_newer_format_is_cache_version_and_is_kept() {
    for protection in LINUX_PROTECTIONS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = store_in(tmp.path(), protection);
        let fs = FileStore::open(tmp.path(), protection).expect("open");
        let key = mailoauth::cache::grant_key(ACCOUNT);
        let newer = format!(
            "mailoauth-cache/2 protection={} alg=something-new\n\u{1}binary",
            protection.as_str()
        );
        fs.save(&key, newer.as_bytes()).expect("plant");
        let e = store.load(ACCOUNT).expect_err("newer");
        assert_eq!(e.kind, ErrorKind::CacheVersion);
        assert!(e.message.en.contains("newer"), "{}", e.message.en);
        assert_eq!(
            kind(store.save(&grant(ACCOUNT, 1))),
            ErrorKind::CacheVersion
        );
        assert_eq!(kind(store.list()), ErrorKind::CacheVersion);
        assert_eq!(
            fs.load(&key).expect("load"),
            Some(newer.clone().into_bytes())
        );

        // A reset moves it aside, byte for byte, and the key starts empty.
        assert_eq!(store.reset().expect("reset"), 1);
        assert!(store.load(ACCOUNT).expect("load").is_none());
        let aside = corrupt_files(tmp.path());
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(&aside[0]).expect("read"), newer.as_bytes());
        store.save(&grant(ACCOUNT, 1)).expect("save after reset");
    }
}

fn corrupt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    v.sort();
    v
}

#[test]
fn damaged_files_are_corrupt_and_left_byte_identical() {
    for protection in LINUX_PROTECTIONS {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = store_in(tmp.path(), protection);
        store.save(&grant(ACCOUNT, 300)).expect("save");
        let fs = FileStore::open(tmp.path(), protection).expect("open");
        let key = mailoauth::cache::grant_key(ACCOUNT);
        let path = fs.blob_path(&key).expect("path");
        let good = std::fs::read(&path).expect("read");

        let mut damaged: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"\x00\x01garbage".to_vec(),
            b"{\"account\":\"alice@contoso.com\"}".to_vec(),
        ];
        for cut in [1, 10, 40, 60, 80, good.len() / 2, good.len() - 1] {
            damaged.push(good[..cut].to_vec());
        }
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x20;
        damaged.push(flipped);

        for bad in damaged {
            std::fs::write(&path, &bad).expect("plant");
            let e = store.load(ACCOUNT).expect_err("damaged");
            assert_eq!(
                e.kind,
                ErrorKind::CacheCorrupt,
                "{protection:?} {} bytes: {}",
                bad.len(),
                e.message.en
            );
            assert!(!e.message.en.contains("RT-SECRET"));
            assert!(e.hint.is_some());
            assert_eq!(
                kind(store.save(&grant(ACCOUNT, 1))),
                ErrorKind::CacheCorrupt
            );
            let scan = store.scan().expect("scan");
            assert_eq!(scan.unreadable.len(), 1);
            assert_eq!(std::fs::read(&path).expect("read"), bad, "left as it was");
        }

        assert_eq!(store.reset().expect("reset"), 1);
        assert_eq!(corrupt_files(tmp.path()).len(), 1);
        assert!(store.load(ACCOUNT).expect("load").is_none());
        store.save(&grant(ACCOUNT, 5)).expect("save after reset");
        assert_eq!(store.reset().expect("nothing to reset"), 0);
    }
}

#[cfg(unix)]
#[test]
fn a_missing_or_damaged_key_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_in(tmp.path(), Protection::User);
    store.save(&grant(ACCOUNT, 5)).expect("save");
    let key_file = tmp.path().join("mailoauth.key");

    // Another process (a fresh store) without the key file cannot read it.
    std::fs::rename(&key_file, tmp.path().join("elsewhere")).expect("hide");
    let fresh = store_in(tmp.path(), Protection::User);
    let e = fresh.load(ACCOUNT).expect_err("no key file");
    assert_eq!(e.kind, ErrorKind::CacheCorrupt);
    assert!(e.message.en.contains("missing"), "{}", e.message.en);
    assert!(!key_file.exists(), "reading never creates a key");

    std::fs::write(&key_file, b"short").expect("damage");
    let fresh = store_in(tmp.path(), Protection::User);
    assert_eq!(kind(fresh.load(ACCOUNT)), ErrorKind::CacheCorrupt);
    assert_eq!(
        kind(fresh.save(&grant("bob@x", 1))),
        ErrorKind::CacheCorrupt
    );
    // The reset moves the key file and the grant aside, then all works.
    assert_eq!(fresh.reset().expect("reset"), 2);
    let fresh = store_in(tmp.path(), Protection::User);
    fresh.save(&grant(ACCOUNT, 1)).expect("save");
    assert_eq!(std::fs::metadata(&key_file).expect("key").len(), 32);
}

#[test]
fn keys_ignore_locks_temporaries_and_quarantined_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let fs = FileStore::open(tmp.path(), Protection::None).expect("open");
    fs.save("grant:a@x", b"1").expect("save");
    fs.save("poll:a@x/imap/INBOX", b"2").expect("save");
    drop(fs.lock("grant:b@x", Duration::ZERO).expect("lock"));
    std::fs::write(tmp.path().join(".abc123.tmp"), b"x").expect("tmp");
    std::fs::write(tmp.path().join("README.txt"), b"x").expect("foreign");
    std::fs::write(tmp.path().join("NOT%41VALID.blob"), b"x").expect("foreign");
    fs.save("grant:c@x", b"3").expect("save");
    fs.quarantine("grant:c@x").expect("quarantine");
    fs.quarantine("grant:nothing@x")
        .expect("quarantine of nothing");
    assert_eq!(
        fs.keys("").expect("keys"),
        ["grant:a@x", "poll:a@x/imap/INBOX"]
    );
    assert_eq!(fs.keys("grant:").expect("keys"), ["grant:a@x"]);
    assert_eq!(fs.keys("poll:a@x/").expect("keys"), ["poll:a@x/imap/INBOX"]);
}

#[test]
fn a_lock_held_elsewhere_is_busy_after_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_in(tmp.path(), Protection::None));
    let held = store.lock(ACCOUNT, Duration::ZERO).expect("lock");
    let start = Instant::now();
    let e = store
        .lock(ACCOUNT, Duration::from_millis(100))
        .err()
        .expect("busy");
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A second store (another handle) contends through the OS lock.
    let other = store_in(tmp.path(), Protection::None);
    assert_eq!(
        other
            .lock(ACCOUNT, Duration::from_millis(30))
            .err()
            .map(|e| e.kind),
        Some(ErrorKind::Busy)
    );
    assert!(other.lock("bob@x", Duration::ZERO).is_ok());
    // A waiter gets it once it is released.
    let s2 = Arc::clone(&store);
    let waiter = std::thread::spawn(move || s2.lock(ACCOUNT, Duration::from_secs(10)).is_ok());
    std::thread::sleep(Duration::from_millis(30));
    drop(held);
    assert!(waiter.join().expect("thread"));
}

#[test]
fn readers_never_see_a_torn_blob_during_1000_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Plaintext: a torn file fails to parse just as well, and debug-build
    // XChaCha20 would make the 1,000 writes slow.
    let writer = store_in(tmp.path(), Protection::None);
    writer.save(&grant(ACCOUNT, 10)).expect("first save");
    let reader = store_in(tmp.path(), Protection::None);
    let done = Arc::new(AtomicBool::new(false));
    let done2 = Arc::clone(&done);
    let reads = std::thread::spawn(move || {
        let mut n = 0u32;
        while !done2.load(Ordering::Relaxed) {
            let g = reader
                .load(ACCOUNT)
                .expect("always readable")
                .expect("always present");
            let len = g.refresh_token.as_ref().map_or(0, |s| s.expose().len());
            assert!(len == 10 + 10 || len == 10 + 40_000, "{len}");
            n += 1;
        }
        n
    });
    for i in 0..1000 {
        let pad = if i % 2 == 0 { 40_000 } else { 10 };
        writer.save(&grant(ACCOUNT, pad)).expect("save");
    }
    done.store(true, Ordering::Relaxed);
    let n = reads.join().expect("reader");
    assert!(n > 0);
    eprintln!("1000 writes, {n} reads, none torn");
}

fn child(mode: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("test binary"));
    c.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode)
    .env(DIR_ENV, dir)
    .stdin(Stdio::null());
    c
}

/// Not a test of its own: the body of the child processes.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("dir"));
    // Counting children race to create the key file; the rewriting child
    // writes plaintext, because unoptimised XChaCha20 would make 50 KB
    // writes slow in a debug build (the property is the file store's).
    let protection = if mode == "count" {
        Protection::User
    } else {
        Protection::None
    };
    let store = store_in(&dir, protection);
    match mode.as_str() {
        "count" => {
            for _ in 0..200 {
                let _guard = store
                    .blobs()
                    .lock(COUNTER_KEY, Duration::from_secs(60))
                    .expect("lock");
                let n: u64 = store.load_raw(COUNTER_KEY).expect("load").unwrap_or(0);
                store.save_raw(COUNTER_KEY, &(n + 1)).expect("save");
            }
        }
        "rewrite" => {
            let mut i = 0usize;
            loop {
                let guard = store.lock(ACCOUNT, Duration::from_secs(60)).expect("lock");
                store.save(&grant(ACCOUNT, 50_000 + i % 7)).expect("save");
                drop(guard);
                if i == 0 {
                    println!("CHILD-READY");
                }
                i += 1;
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn processes_take_turns_and_no_increment_is_lost() {
    const CHILDREN: u64 = 4;
    let tmp = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            child("count", tmp.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("wait").success(), "a child failed");
    }
    let store = store_in(tmp.path(), Protection::User);
    let n: u64 = store.load_raw(COUNTER_KEY).expect("load").expect("present");
    assert_eq!(n, CHILDREN * 200);
    eprintln!(
        "{CHILDREN} processes x 200 locked increments in {:?}",
        start.elapsed()
    );
}

#[cfg(unix)]
#[test]
fn sigkill_mid_write_leaves_a_readable_blob_and_a_free_lock() {
    const KILLS: usize = 200;
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = store_in(tmp.path(), Protection::None);
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 | 1)
        .unwrap_or(0x9e37_79b9);
    let start = Instant::now();
    for _ in 0..KILLS {
        let mut c = child("rewrite", tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out = c.stdout.take().expect("stdout");
        let ready = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("CHILD-READY"));
        assert!(ready, "the child did not start writing");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 8000));
        c.kill().expect("SIGKILL");
        c.wait().expect("reap");

        let _lock = store
            .lock(ACCOUNT, Duration::ZERO)
            .expect("the OS released the dead child's lock");
        let g = store
            .load(ACCOUNT)
            .expect("readable after a kill")
            .expect("present");
        let len = g.refresh_token.as_ref().map_or(0, |s| s.expose().len());
        assert!((50_010..50_017).contains(&len), "{len}");
    }
    assert_eq!(store.blobs().keys("").expect("keys").len(), 1);
    // Each temporary file left behind is a kill between creating and
    // renaming it: a write cut short.
    let torn = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    eprintln!(
        "{KILLS} SIGKILLs in {:?}, {torn} of them mid-write",
        start.elapsed()
    );
}

/// An in-memory host store whose callbacks can be made to fail.
#[derive(Default)]
struct MemHost {
    rows: Mutex<HashMap<String, Vec<u8>>>,
    fail_load: AtomicI32,
    fail_save: AtomicI32,
    fail_lock: AtomicI32,
    no_lock: bool,
    locked: Mutex<Vec<String>>,
    lock_calls: AtomicUsize,
}

impl HostCallbacks for MemHost {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, i32> {
        match self.fail_load.load(Ordering::SeqCst) {
            0 => Ok(self.rows.lock().expect("rows").get(key).cloned()),
            code => Err(code),
        }
    }
    fn save(&self, key: &str, data: &[u8]) -> Result<(), i32> {
        match self.fail_save.load(Ordering::SeqCst) {
            0 => {
                self.rows
                    .lock()
                    .expect("rows")
                    .insert(key.to_string(), data.to_vec());
                Ok(())
            }
            code => Err(code),
        }
    }
    fn lock(&self, key: &str, lock: bool, timeout_ms: i32) -> Result<(), i32> {
        assert!(timeout_ms >= 0);
        self.lock_calls.fetch_add(1, Ordering::SeqCst);
        let mut locked = self.locked.lock().expect("locked");
        if lock {
            match self.fail_lock.load(Ordering::SeqCst) {
                0 => {}
                code => return Err(code),
            }
            assert!(!locked.contains(&key.to_string()), "{key} locked twice");
            locked.push(key.to_string());
        } else {
            locked.retain(|k| k != key);
        }
        Ok(())
    }
    fn has_lock(&self) -> bool {
        !self.no_lock
    }
}

fn host_store(host: &Arc<MemHost>) -> GrantStore {
    let codec = Codec::new(Protection::Key, None)
        .and_then(|c| c.with_key(&HOST_KEY))
        .expect("codec");
    GrantStore::new(Arc::new(HostStore::new(host.clone())), codec)
}

#[test]
fn host_store_round_trip_index_and_removal() {
    let host = Arc::new(MemHost::default());
    let store = host_store(&host);
    store.save(&grant(ACCOUNT, 10)).expect("save");
    store.save(&grant("bob@x", 10)).expect("save");
    store
        .save_raw("poll:bob@x/pop3/INBOX", &"state")
        .expect("save raw");
    assert_eq!(
        json(&store.load(ACCOUNT).expect("load").expect("present")),
        json(&grant(ACCOUNT, 10))
    );
    assert_eq!(store.list().expect("list").len(), 2);
    assert_eq!(
        store.blobs().keys("").expect("keys"),
        [
            "grant:alice@contoso.com",
            "grant:bob@x",
            "poll:bob@x/pop3/INBOX"
        ]
    );
    assert_eq!(store.stamp(ACCOUNT), None);
    {
        let rows = host.rows.lock().expect("rows");
        assert!(rows["index:keys"].starts_with(b"{\"v\":1,"));
        assert!(rows["grant:bob@x"].starts_with(b"mailoauth-cache/1 protection=key"));
    }

    store.remove("bob@x").expect("remove");
    assert!(
        host.rows.lock().expect("rows")["grant:bob@x"].is_empty(),
        "removal = empty blob"
    );
    assert!(store.load("bob@x").expect("load").is_none());
    assert_eq!(store.list().expect("list").len(), 1);

    // Locks go through the host, one key at a time, and are released.
    let g = store.lock(ACCOUNT, Duration::from_secs(1)).expect("lock");
    assert_eq!(
        *host.locked.lock().expect("locked"),
        ["grant:alice@contoso.com"]
    );
    drop(g);
    assert!(host.locked.lock().expect("locked").is_empty());

    // A damaged grant: reported, not overwritten, moved aside by a reset.
    host.rows.lock().expect("rows").insert(
        "grant:alice@contoso.com".into(),
        b"mailoauth-cache/1 junk".to_vec(),
    );
    assert_eq!(kind(store.load(ACCOUNT)), ErrorKind::CacheCorrupt);
    assert_eq!(
        kind(store.save(&grant(ACCOUNT, 1))),
        ErrorKind::CacheCorrupt
    );
    assert_eq!(store.reset().expect("reset"), 1);
    assert!(store.load(ACCOUNT).expect("load").is_none());
    let aside = store.blobs().keys("corrupt:").expect("keys");
    assert_eq!(aside.len(), 1);
    assert!(aside[0].ends_with(":grant:alice@contoso.com"));
    assert_eq!(
        host.rows.lock().expect("rows")[&aside[0]],
        b"mailoauth-cache/1 junk"
    );

    // A damaged index: listings fail until a reset starts a new one.
    host.rows
        .lock()
        .expect("rows")
        .insert("index:keys".into(), b"not json".to_vec());
    assert_eq!(kind(store.list()), ErrorKind::CacheCorrupt);
    assert_eq!(
        kind(store.save(&grant("new@x", 1))),
        ErrorKind::CacheCorrupt
    );
    assert_eq!(store.reset().expect("reset"), 1);
    store.save(&grant("new@x", 1)).expect("save");
    assert_eq!(store.blobs().keys("grant:").expect("keys"), ["grant:new@x"]);
}

#[test]
fn host_store_callback_failures() {
    let host = Arc::new(MemHost::default());
    let store = host_store(&host);
    store.save(&grant(ACCOUNT, 10)).expect("save");

    host.fail_load.store(5, Ordering::SeqCst);
    let e = store.load(ACCOUNT).expect_err("load fails");
    assert_eq!(e.kind, ErrorKind::CacheIo);
    assert!(
        e.message.en.contains("load callback returned 5"),
        "{}",
        e.message.en
    );
    host.fail_load.store(0, Ordering::SeqCst);

    host.fail_save.store(-3, Ordering::SeqCst);
    let e = store.save(&grant(ACCOUNT, 11)).expect_err("save fails");
    assert_eq!(e.kind, ErrorKind::CacheIo);
    assert!(
        e.message.en.contains("save callback returned -3"),
        "{}",
        e.message.en
    );
    assert_eq!(kind(store.remove(ACCOUNT)), ErrorKind::CacheIo);
    host.fail_save.store(0, Ordering::SeqCst);
    assert!(
        store.load(ACCOUNT).expect("load").is_some(),
        "nothing was lost"
    );

    host.fail_lock.store(1, Ordering::SeqCst);
    let e = store
        .lock(ACCOUNT, Duration::from_millis(10))
        .err()
        .expect("busy");
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(e.message.en.contains("returned 1"), "{}", e.message.en);
    // The failed lock left nothing held in-process.
    host.fail_lock.store(0, Ordering::SeqCst);
    drop(store.lock(ACCOUNT, Duration::ZERO).expect("lock"));

    // Without a lock callback, threads of this process still take turns.
    let nolock = Arc::new(MemHost {
        no_lock: true,
        ..MemHost::default()
    });
    let store = host_store(&nolock);
    let held = store.lock(ACCOUNT, Duration::ZERO).expect("lock");
    assert_eq!(
        kind(store.lock(ACCOUNT, Duration::from_millis(10))),
        ErrorKind::Busy
    );
    drop(held);
    store.save(&grant(ACCOUNT, 1)).expect("save");
    assert_eq!(nolock.lock_calls.load(Ordering::SeqCst), 0);
}
