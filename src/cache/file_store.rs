//! [`FileStore`]: one file per key in a folder.
//!
//! - Folder: created 0700 (0770 for `machine`, whose members share it through
//!   the folder's group; an administrator prepares `/var/lib/mailoauth` as
//!   `root:<group>` mode 2770). An existing folder keeps its permissions.
//! - `<name>.blob`: the blob of a key; `<name>` is the key with every byte
//!   outside `a-z 0-9 . - _ @` escaped: `A`-`Z` as `^` + the lower-case
//!   letter (so that case-insensitive file systems cannot merge two keys),
//!   anything else as `%XX`. `grant:alice@contoso.com` is
//!   `grant%3Aalice@contoso.com.blob`. Files are 0600 (0640 for `machine`).
//! - `<name>.lock`: the sidecar of the key's OS lock (flock on Unix,
//!   LockFileEx on Windows, through `File::try_lock`). Its existence means
//!   nothing: the OS drops the lock when the process dies. Never deleted
//!   (deleting a lock file that another process has open would split the
//!   lock in two).
//! - `.<random>.tmp`: a write in progress. A blob is replaced atomically: a
//!   temporary file in the same folder is written, synced and renamed over
//!   the blob, then the folder is synced (Unix). Temporary files that a
//!   killed process left behind are removed when a store is opened, once
//!   they are 10 minutes old.
//! - `<name>.blob.corrupt-<unix time>[-n]`: a blob moved aside by
//!   [`BlobStore::quarantine`].

use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::codec::io_err;
use super::local_lock::{LocalGuard, LocalLocks};
use super::{BlobStore, LockGuard, Stamp, unix_now};
use crate::config::Protection;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

const BLOB_SUFFIX: &str = ".blob";
const LOCK_SUFFIX: &str = ".lock";
const TMP_SUFFIX: &str = ".tmp";
/// The longest encoded key (leaves room for the suffixes within 255 bytes).
const MAX_NAME: usize = 200;
/// The largest blob read (a grant is a few KiB).
const MAX_BLOB: u64 = 16 << 20;
const STALE_TMP: Duration = Duration::from_secs(600);

/// Blobs in files of one folder.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    shared: bool,
    locks: Arc<LocalLocks>,
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`. `machine` protection
    /// makes it shared by the folder's group; any other is owner-only.
    pub fn open(dir: impl Into<PathBuf>, protection: Protection) -> Result<Self> {
        let dir = dir.into();
        let shared = protection == Protection::Machine;
        ensure_dir(&dir, shared)?;
        let store = Self {
            dir,
            shared,
            locks: Arc::new(LocalLocks::default()),
        };
        store.remove_stale_temporaries();
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`'s blob.
    pub fn blob_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir.join(encode_key(key)? + BLOB_SUFFIX))
    }

    fn lock_path(&self, key: &str) -> Result<PathBuf> {
        Ok(self.dir.join(encode_key(key)? + LOCK_SUFFIX))
    }

    fn remove_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !(name.starts_with('.') && name.ends_with(TMP_SUFFIX)) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_TMP);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                log::debug!("removed the stale temporary cache file {name}");
            }
        }
    }

    fn open_lock_file(&self, path: &Path) -> Result<File> {
        let mut create = OpenOptions::new();
        create.read(true).write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
        match create.open(path) {
            Ok(f) => {
                // Group members of a shared store must be able to open it.
                if self.shared {
                    set_file_mode(&f, true).map_err(|e| io_err(path, &e))?;
                }
                return Ok(f);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(path, &e)),
        }
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => Ok(f),
            // Another member's lock file that we may only read: a shared
            // (flock / LockFileEx) lock works on a read-only handle too.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                File::open(path).map_err(|e| io_err(path, &e))
            }
            Err(e) => Err(io_err(path, &e)),
        }
    }

    fn write_atomically(&self, path: &Path, data: &[u8]) -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".")
            .suffix(TMP_SUFFIX)
            .tempfile_in(&self.dir)
            .map_err(|e| io_err(&self.dir, &e))?;
        set_file_mode(tmp.as_file(), self.shared).map_err(|e| io_err(tmp.path(), &e))?;
        tmp.write_all(data)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_err(tmp.path(), &e))?;
        persist(tmp, path)?;
        sync_dir(&self.dir);
        Ok(())
    }
}

/// Renames the temporary file over the target. On Windows a scanner or
/// indexer holding the target open without share-delete makes the rename
/// fail for a moment: retried briefly there.
fn persist(mut tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match tmp.persist(path) {
            Ok(_) => return Ok(()),
            Err(e)
                if cfg!(windows)
                    && e.error.kind() == std::io::ErrorKind::PermissionDenied
                    && tries < 20 =>
            {
                tries += 1;
                tmp = e.file;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io_err(path, &e.error)),
        }
    }
}

impl BlobStore for FileStore {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.blob_path(key)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, &e)),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > MAX_BLOB {
            return Err(super::codec::corrupt(
                key,
                Text::new(
                    format!("its file is too large ({len} bytes)"),
                    format!("seine Datei ist zu groß ({len} Byte)"),
                ),
            ));
        }
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        file.take(MAX_BLOB)
            .read_to_end(&mut data)
            .map_err(|e| io_err(&path, &e))?;
        Ok(Some(data))
    }

    fn save(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.blob_path(key)?;
        self.write_atomically(&path, data)
    }

    fn remove(&self, key: &str) -> Result<()> {
        let path = self.blob_path(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.dir);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path, &e)),
        }
    }

    fn lock(&self, key: &str, timeout: Duration) -> Result<Box<dyn LockGuard>> {
        let path = self.lock_path(key)?;
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let local = self
            .locks
            .acquire(key, deadline)
            .ok_or_else(|| busy(key, timeout))?;
        let file = self.open_lock_file(&path)?;
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(Box::new(FileLock {
                        file,
                        _local: local,
                    }));
                }
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path, &e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(busy(key, timeout));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    fn stamp(&self, key: &str) -> Option<Stamp> {
        let path = self.blob_path(key).ok()?;
        match std::fs::metadata(&path) {
            Ok(m) => Some(stamp_of(&m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Stamp(0)),
            Err(_) => None,
        }
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&self.dir, &e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&self.dir, &e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(BLOB_SUFFIX)) else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            match decode_key(stem) {
                Some(key) if key.starts_with(prefix) => keys.push(key),
                Some(_) => {}
                None => log::debug!("ignoring the foreign file {stem}{BLOB_SUFFIX} in the cache"),
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn quarantine(&self, key: &str) -> Result<()> {
        let path = self.blob_path(key)?;
        if !path.exists() {
            return Ok(());
        }
        let aside = aside_name(&path);
        std::fs::rename(&path, &aside).map_err(|e| io_err(&path, &e))?;
        sync_dir(&self.dir);
        log::warning!(
            "the unreadable cache record {key} was moved to {}",
            aside.display()
        );
        Ok(())
    }
}

/// A held file lock (and the in-process key). Unlocked on drop; the OS
/// unlocks it anyway when the handle closes or the process dies.
struct FileLock {
    file: File,
    _local: LocalGuard,
}

impl LockGuard for FileLock {}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn busy(key: &str, timeout: Duration) -> Error {
    let ms = timeout.as_millis();
    Error::new(
        ErrorKind::Busy,
        Text::new(
            format!("the cache record {key} stayed locked by another process or thread for {ms} ms"),
            format!("der Cache-Eintrag {key} blieb {ms} ms lang von einem anderen Prozess oder Thread gesperrt"),
        ),
    )
    .transient()
}

/// `<file>.corrupt-<unix time>`, with `-n` added if that exists already.
pub(crate) fn aside_name(path: &Path) -> PathBuf {
    let base = format!("{}.corrupt-{}", path.display(), unix_now());
    let mut aside = PathBuf::from(&base);
    let mut n = 1;
    while aside.exists() {
        aside = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    aside
}

/// The key as a file-name stem (see the module documentation).
pub fn encode_key(key: &str) -> Result<String> {
    let mut out = String::with_capacity(key.len() + 8);
    for b in key.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'@' => out.push(char::from(b)),
            b'A'..=b'Z' => {
                out.push('^');
                out.push(char::from(b.to_ascii_lowercase()));
            }
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
    if key.is_empty() || out.len() > MAX_NAME {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!(
                    "the cache key '{key}' is empty or too long for a file name (at most {MAX_NAME} bytes encoded)"
                ),
                format!(
                    "der Cache-Schlüssel '{key}' ist leer oder für einen Dateinamen zu lang (höchstens {MAX_NAME} Byte kodiert)"
                ),
            ),
        ));
    }
    Ok(out)
}

/// The inverse of [`encode_key`]; None for a name it cannot have made.
pub fn decode_key(name: &str) -> Option<String> {
    let mut out = Vec::with_capacity(name.len());
    let mut bytes = name.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'@' => out.push(b),
            b'^' => match bytes.next() {
                Some(c @ b'a'..=b'z') => out.push(c.to_ascii_uppercase()),
                _ => return None,
            },
            b'%' => {
                let hi = hex_digit(bytes.next()?)?;
                let lo = hex_digit(bytes.next()?)?;
                let v = hi << 4 | lo;
                // Only bytes that encode_key escapes this way.
                if v.is_ascii_lowercase()
                    || v.is_ascii_uppercase()
                    || v.is_ascii_digit()
                    || matches!(v, b'.' | b'-' | b'_' | b'@')
                {
                    return None;
                }
                out.push(v);
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Creates `dir` (and its parents) if missing: the last level 0700, or 0770
/// when `shared`, set explicitly so that the umask does not narrow it.
pub(crate) fn ensure_dir(dir: &Path, shared: bool) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| io_err(parent, &e))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, if shared { 0o770 } else { 0o700 });
    match builder.create(dir) {
        Ok(()) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = if shared { 0o770 } else { 0o700 };
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| io_err(dir, &e))?;
            }
            #[cfg(not(unix))]
            let _ = shared;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(io_err(dir, &e)),
    }
}

/// 0600, or 0640 when `shared` (Unix; elsewhere the folder's ACL applies).
pub(crate) fn set_file_mode(file: &File, shared: bool) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if shared { 0o640 } else { 0o600 };
        file.set_permissions(std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, shared);
        Ok(())
    }
}

/// Makes a rename or removal in `dir` durable (Unix; NTFS journals it).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Modification time in the high half; a hash of the rest (change time,
/// size, inode, device) in the low half. Never 0 for an existing file.
fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.len().hash(&mut h);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (m.ctime(), m.ctime_nsec(), m.ino(), m.dev()).hash(&mut h);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::MetadataExt;
        (m.creation_time(), m.file_attributes()).hash(&mut h);
    }
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Stamp((u128::from(mtime) << 64) | u128::from(h.finish() | 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_encoding_round_trips_and_is_file_safe() {
        for key in [
            "grant:alice@contoso.com",
            "poll:alice@contoso.com/imap/INBOX",
            "poll:a@b/imap/Gesendete Elemente/Ünterordner",
            "poll:x/imap/..",
            "grant:CON",
            "%^:\\*?\"<>|",
        ] {
            let enc = encode_key(key).expect("encode");
            assert!(
                enc.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b"._-@^%ABCDEF".contains(&b)),
                "{enc}"
            );
            assert!(!enc.contains('/') && !enc.contains('\\'));
            assert_eq!(decode_key(&enc).as_deref(), Some(key));
        }
        assert_eq!(
            encode_key("grant:alice@contoso.com").expect("encode"),
            "grant%3Aalice@contoso.com"
        );
        assert_ne!(
            encode_key("poll:a/INBOX").ok(),
            encode_key("poll:a/inbox").ok()
        );
        assert!(encode_key("").is_err());
        assert!(encode_key(&"x".repeat(MAX_NAME + 1)).is_err());
        for foreign in ["A", "%41", "%3", "^A", "%zz", "x y", ""] {
            assert_eq!(decode_key(foreign), None, "{foreign}");
        }
    }
}
