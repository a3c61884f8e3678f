//! The stored format of one record and its protection at rest.
//!
//! A blob is a one-line plaintext header, then the body:
//!
//! ```text
//! mailoauth-cache/1 protection=key alg=xchacha20poly1305 kcv=1a2b3c4d\n<body>
//! ```
//!
//! - `mailoauth-cache/` is the magic, `1` the format version. A reader that
//!   finds a higher version answers `CacheVersion` and never rewrites it.
//! - `protection` is `cache.protection` (`user`, `machine`, `key`, `none`);
//!   `alg` says how the body is protected: `none` (the body is the record's
//!   JSON), `xchacha20poly1305` (24-byte random nonce, ciphertext, 16-byte
//!   tag; the whole header line is the associated data, so it cannot be
//!   changed unnoticed), `dpapi-user` / `dpapi-machine` (a Windows DPAPI
//!   blob; the header line is the DPAPI entropy).
//! - `kcv` (key check value, XChaCha only): the first 4 bytes of the tag of
//!   an empty message under the key with an all-zero nonce. It reveals
//!   nothing about the key, and lets a reader tell "a different key" from
//!   "damaged".
//! - Unknown `name=value` fields are ignored (additions within version 1).
//!   The header is at most 256 bytes of printable ASCII.
//!
//! Where the key comes from, by protection:
//!
//! | protection | Windows | elsewhere |
//! | --- | --- | --- |
//! | `user` | DPAPI, current user | XChaCha20-Poly1305, key in `mailoauth.key` (0600) beside the cache |
//! | `machine` | DPAPI, local machine | XChaCha20-Poly1305, key in `mailoauth.key` (0640, group-readable) in a 0770 folder |
//! | `key` | XChaCha20-Poly1305 with the host's key | same |
//! | `none` | plaintext | same |
//!
//! The key file stands in for an OS keyring (not used yet; logged once at
//! info): it is created once by the first writer, atomically (written and
//! synced as a temporary file, then linked into place only if no key file
//! exists: `persist_noclobber`, so a racing process reads the winner's key
//! and nobody ever sees a half-written one), and never overwritten. It is
//! read on every open and seal (32 bytes), so all processes follow the file.
//! A key file that is not 32 bytes is `CacheCorrupt` until a reset moves it
//! aside; a missing one makes existing records `CacheCorrupt` (reading
//! never creates a key).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::{Zeroize, Zeroizing};

use crate::config::Protection;
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::log;

/// The format version this library writes and the highest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// The header's magic.
pub const MAGIC: &str = "mailoauth-cache/";
/// The key file's name, in the cache folder.
pub const KEY_FILE_NAME: &str = "mailoauth.key";
const MAX_HEADER: usize = 256;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The protection of stored records: seals bytes for storing, opens them
/// again, and says precisely why a blob cannot be read.
pub struct Codec {
    protection: Protection,
    scheme: Scheme,
}

enum Scheme {
    Plain,
    /// `key`: the host's key, once set.
    HostKey(Option<Zeroizing<[u8; KEY_LEN]>>),
    /// `user` / `machine` off Windows.
    #[cfg_attr(windows, allow(dead_code))]
    KeyFile(KeyFile),
    /// `user` / `machine` on Windows.
    #[cfg(windows)]
    Dpapi {
        machine: bool,
    },
}

#[cfg_attr(windows, allow(dead_code))]
struct KeyFile {
    path: PathBuf,
    shared: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match &self.scheme {
            Scheme::Plain => "plain".to_string(),
            Scheme::HostKey(k) => format!("host key (set: {})", k.is_some()),
            Scheme::KeyFile(kf) => format!("key file {}", kf.path.display()),
            #[cfg(windows)]
            Scheme::Dpapi { machine } => format!("dpapi (machine: {machine})"),
        };
        f.debug_struct("Codec")
            .field("protection", &self.protection)
            .field("scheme", &scheme)
            .finish()
    }
}

impl Codec {
    /// The codec of a protection. `folder` is the cache folder: the key file
    /// of `user` and `machine` lives there off Windows (required there;
    /// ignored otherwise).
    pub fn new(protection: Protection, folder: Option<&Path>) -> Result<Self> {
        let scheme = match protection {
            Protection::None => Scheme::Plain,
            Protection::Key => Scheme::HostKey(None),
            #[cfg(windows)]
            Protection::User | Protection::Machine => {
                let _ = folder;
                Scheme::Dpapi {
                    machine: protection == Protection::Machine,
                }
            }
            #[cfg(not(windows))]
            Protection::User | Protection::Machine => {
                let Some(folder) = folder else {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        Text::new(
                            format!(
                                "cache.protection '{}' needs a cache folder for its key file",
                                protection.as_str()
                            ),
                            format!(
                                "cache.protection '{}' braucht einen Cache-Ordner für ihre Schlüsseldatei",
                                protection.as_str()
                            ),
                        ),
                    ));
                };
                Scheme::KeyFile(KeyFile {
                    path: folder.join(KEY_FILE_NAME),
                    shared: protection == Protection::Machine,
                })
            }
        };
        Ok(Self { protection, scheme })
    }

    /// Sets the host's 32-byte key (`mailoauth_context_set_cache_key`). The
    /// bytes are copied; the copy is zeroed when the codec is dropped. Only
    /// `key` protection uses it; others accept and ignore it.
    pub fn with_key(mut self, key: &[u8]) -> Result<Self> {
        let Ok(bytes) = <[u8; KEY_LEN]>::try_from(key) else {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                Text::new(
                    format!("the cache key must be 32 bytes, not {}", key.len()),
                    format!(
                        "der Cache-Schlüssel muss 32 Byte lang sein, nicht {}",
                        key.len()
                    ),
                ),
            ));
        };
        let bytes = Zeroizing::new(bytes);
        if let Scheme::HostKey(slot) = &mut self.scheme {
            *slot = Some(bytes);
        }
        Ok(self)
    }

    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// The key file of `user`/`machine` off Windows.
    pub fn key_file(&self) -> Option<&Path> {
        match &self.scheme {
            Scheme::KeyFile(kf) => Some(&kf.path),
            _ => None,
        }
    }

    fn alg(&self) -> &'static str {
        match &self.scheme {
            Scheme::Plain => "none",
            Scheme::HostKey(_) | Scheme::KeyFile(_) => "xchacha20poly1305",
            #[cfg(windows)]
            Scheme::Dpapi { machine: false } => "dpapi-user",
            #[cfg(windows)]
            Scheme::Dpapi { machine: true } => "dpapi-machine",
        }
    }

    /// Serialises `value` as JSON and seals it. The plaintext buffer is
    /// sized exactly (no reallocation leaves copies behind) and zeroed.
    pub fn encode<T: Serialize>(&self, value: &T) -> Result<Zeroizing<Vec<u8>>> {
        let mut counter = Counter(0);
        serde_json::to_writer(&mut counter, value)
            .map_err(|e| Error::internal(format!("cache record not serialisable: {e}")))?;
        let mut plain = Zeroizing::new(Vec::with_capacity(counter.0));
        serde_json::to_writer(&mut *plain, value)
            .map_err(|e| Error::internal(format!("cache record not serialisable: {e}")))?;
        self.seal(&plain)
    }

    /// Opens a blob and parses its JSON body. `what` names the record in
    /// messages (its store key).
    pub fn decode<T: DeserializeOwned>(&self, what: &str, blob: &[u8]) -> Result<T> {
        let plain = self.open(what, blob)?;
        serde_json::from_slice(&plain).map_err(|e| {
            // Only the position: serde's message may quote the content.
            corrupt(
                what,
                Text::new(
                    format!(
                        "its content cannot be parsed (line {}, column {})",
                        e.line(),
                        e.column()
                    ),
                    format!(
                        "sein Inhalt ist nicht lesbar (Zeile {}, Spalte {})",
                        e.line(),
                        e.column()
                    ),
                ),
            )
        })
    }

    /// Seals plaintext bytes into a blob (header + protected body). The
    /// result holds secrets for `none`, so it is zeroed when dropped.
    pub fn seal(&self, plain: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        match &self.scheme {
            Scheme::Plain => {
                let header = self.header(None);
                let mut out = Zeroizing::new(Vec::with_capacity(header.len() + plain.len()));
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(plain);
                Ok(out)
            }
            Scheme::HostKey(key) => {
                let key = key.as_ref().ok_or_else(missing_host_key)?;
                self.seal_xchacha(key, plain)
            }
            Scheme::KeyFile(kf) => {
                let key = kf.get(true, "a new record")?;
                self.seal_xchacha(&key, plain)
            }
            #[cfg(windows)]
            Scheme::Dpapi { machine } => {
                let header = self.header(None);
                let body =
                    super::dpapi::protect(plain, header.as_bytes(), *machine).map_err(|e| {
                        Error::new(
                            ErrorKind::CacheIo,
                            Text::new(
                                format!("DPAPI could not protect the cache record: {e}"),
                                format!("DPAPI konnte den Cache-Eintrag nicht schützen: {e}"),
                            ),
                        )
                    })?;
                let mut out = Zeroizing::new(Vec::with_capacity(header.len() + body.len()));
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(&body);
                Ok(out)
            }
        }
    }

    fn seal_xchacha(&self, key: &[u8; KEY_LEN], plain: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let cipher = cipher(key);
        let header = self.header(Some(&key_check(&cipher)));
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::internal(format!("no random numbers from the OS: {e}")))?;
        let start = header.len() + NONCE_LEN;
        let mut out = Zeroizing::new(Vec::with_capacity(start + plain.len() + TAG_LEN));
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let (head, body) = out.split_at_mut(start);
        let tag = cipher
            .encrypt_inout_detached(&XNonce::from(nonce), &head[..header.len()], body.into())
            .map_err(|_| Error::internal("the cache record is too large to encrypt"))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Checks the header and removes the protection. `what` names the
    /// record in messages. Never reveals content in an error.
    pub fn open(&self, what: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let header = Header::parse(what, blob)?;
        if header.protection != self.protection.as_str() {
            return Err(corrupt(
                what,
                Text::new(
                    format!(
                        "it was written with cache.protection '{}', but '{}' is configured",
                        header.protection,
                        self.protection.as_str()
                    ),
                    format!(
                        "er wurde mit cache.protection '{}' geschrieben, eingestellt ist aber '{}'",
                        header.protection,
                        self.protection.as_str()
                    ),
                ),
            ));
        }
        if header.alg != self.alg() {
            return Err(corrupt(
                what,
                Text::new(
                    format!(
                        "it was protected with '{}', which cannot be opened here (this system uses '{}')",
                        header.alg,
                        self.alg()
                    ),
                    format!(
                        "er wurde mit '{}' geschützt, was hier nicht zu öffnen ist (dieses System nutzt '{}')",
                        header.alg,
                        self.alg()
                    ),
                ),
            ));
        }
        let aad = &blob[..header.len];
        let body = &blob[header.len..];
        match &self.scheme {
            Scheme::Plain => Ok(Zeroizing::new(body.to_vec())),
            Scheme::HostKey(key) => {
                let key = key.as_ref().ok_or_else(missing_host_key)?;
                open_xchacha(what, key, header.kcv, aad, body)
            }
            Scheme::KeyFile(kf) => {
                let key = kf.get(false, what)?;
                open_xchacha(what, &key, header.kcv, aad, body)
            }
            #[cfg(windows)]
            Scheme::Dpapi { .. } => super::dpapi::unprotect(body, aad).map_err(|e| {
                corrupt(
                    what,
                    Text::new(
                        format!(
                            "DPAPI cannot decrypt it ({e}); it was written by another account or machine, or altered"
                        ),
                        format!(
                            "DPAPI kann ihn nicht entschlüsseln ({e}); er stammt von einem anderen Konto oder Rechner oder wurde verändert"
                        ),
                    ),
                )
            }),
        }
    }

    /// Before a reset: moves a damaged key file aside (one that is not 32
    /// bytes), so that a new one can be made. Returns whether it did.
    pub fn recover_key(&self) -> Result<bool> {
        let Scheme::KeyFile(kf) = &self.scheme else {
            return Ok(false);
        };
        match std::fs::metadata(&kf.path) {
            Ok(m) if m.len() == KEY_LEN as u64 => Ok(false),
            Ok(_) => {
                let aside = super::file_store::aside_name(&kf.path);
                std::fs::rename(&kf.path, &aside).map_err(|e| io_err(&kf.path, &e))?;
                log::warning!(
                    "the damaged cache key file {} was moved to {}",
                    kf.path.display(),
                    aside.display()
                );
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&kf.path, &e)),
        }
    }

    fn header(&self, kcv: Option<&str>) -> String {
        let mut h = format!(
            "{MAGIC}{FORMAT_VERSION} protection={} alg={}",
            self.protection.as_str(),
            self.alg()
        );
        if let Some(kcv) = kcv {
            let _ = write!(h, " kcv={kcv}");
        }
        h.push('\n');
        h
    }
}

/// A parsed header.
#[derive(Debug)]
struct Header<'a> {
    protection: &'a str,
    alg: &'a str,
    kcv: Option<&'a str>,
    /// Bytes up to and including the newline.
    len: usize,
}

impl<'a> Header<'a> {
    fn parse(what: &str, blob: &'a [u8]) -> Result<Self> {
        if !blob.starts_with(MAGIC.as_bytes()) {
            return Err(corrupt(
                what,
                Text::new(
                    "it is not a mailoauth cache record (bad magic)",
                    "er ist kein mailoauth-Cache-Eintrag (falsche Kennung)",
                ),
            ));
        }
        let damaged = || {
            corrupt(
                what,
                Text::new("its header is damaged", "sein Kopf ist beschädigt"),
            )
        };
        let window = &blob[..blob.len().min(MAX_HEADER)];
        let rest = &window[MAGIC.len()..];
        // The version first: a newer format may change everything after it.
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let version: u32 = std::str::from_utf8(&rest[..digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(damaged)?;
        if version > FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::CacheVersion,
                Text::new(
                    format!(
                        "the cache record {what} was written by a newer mailoauth (format {version}; this library reads format {FORMAT_VERSION})"
                    ),
                    format!(
                        "der Cache-Eintrag {what} wurde von einem neueren mailoauth geschrieben (Format {version}; diese Bibliothek liest Format {FORMAT_VERSION})"
                    ),
                ),
            )
            .with_hint(Text::new(
                "Nothing was overwritten. Use the newer mailoauth, or give this one its own cache.path.",
                "Es wurde nichts überschrieben. Verwenden Sie das neuere mailoauth oder geben Sie diesem einen eigenen cache.path.",
            )));
        }
        if version == 0 {
            return Err(damaged());
        }
        let nl = window
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(damaged)?;
        let line = std::str::from_utf8(&window[MAGIC.len() + digits..nl]).map_err(|_| damaged())?;
        if !line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(damaged());
        }
        let (mut protection, mut alg, mut kcv) = (None, None, None);
        for field in line.split(' ').filter(|f| !f.is_empty()) {
            let (name, value) = field.split_once('=').ok_or_else(damaged)?;
            match name {
                "protection" => protection = Some(value),
                "alg" => alg = Some(value),
                "kcv" => kcv = Some(value),
                _ => {}
            }
        }
        Ok(Header {
            protection: protection.ok_or_else(damaged)?,
            alg: alg.ok_or_else(damaged)?,
            kcv,
            len: nl + 1,
        })
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

/// The key check value: 4 bytes (hex) of the tag of an empty message under
/// the all-zero nonce. A PRF output: it tells keys apart, nothing more.
fn key_check(cipher: &XChaCha20Poly1305) -> String {
    let mut empty: [u8; 0] = [];
    match cipher.encrypt_inout_detached(
        &XNonce::default(),
        b"mailoauth key check",
        (&mut empty[..]).into(),
    ) {
        Ok(tag) => tag[..4].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        }),
        Err(_) => String::new(),
    }
}

fn open_xchacha(
    what: &str,
    key: &[u8; KEY_LEN],
    kcv: Option<&str>,
    aad: &[u8],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let cipher = cipher(key);
    if let Some(stored) = kcv {
        let mine = key_check(&cipher);
        if stored != mine {
            return Err(corrupt(
                what,
                Text::new(
                    format!(
                        "it was encrypted with a different key (key check {stored}; the current key's is {mine})"
                    ),
                    format!(
                        "er wurde mit einem anderen Schlüssel verschlüsselt (Prüfwert {stored}; der des aktuellen Schlüssels ist {mine})"
                    ),
                ),
            ));
        }
    }
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(corrupt(
            what,
            Text::new("it is truncated", "er ist abgeschnitten"),
        ));
    }
    let (nonce, rest) = body.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let (Ok(nonce), Ok(tag)) = (
        <[u8; NONCE_LEN]>::try_from(nonce),
        <[u8; TAG_LEN]>::try_from(tag),
    ) else {
        return Err(Error::internal("nonce or tag length"));
    };
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            plain.as_mut_slice().into(),
            &tag.into(),
        )
        .map_err(|_| {
            corrupt(
                what,
                Text::new(
                    "it cannot be decrypted: it was altered or truncated",
                    "er lässt sich nicht entschlüsseln: er wurde verändert oder abgeschnitten",
                ),
            )
        })?;
    Ok(plain)
}

static KEY_FILE_LOGGED: AtomicBool = AtomicBool::new(false);

#[cfg_attr(windows, allow(dead_code))]
impl KeyFile {
    /// The key, read from the file each time (32 bytes; the file is the
    /// one truth that every process shares, so a replaced or removed key
    /// file is noticed at once). With `create`, a missing key file is made
    /// (by the first writer); without, its absence makes `what` unreadable.
    fn get(&self, create: bool, what: &str) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let key = match self.read()? {
            Some(k) => k,
            None if create => self.create()?,
            None => {
                return Err(corrupt(
                    what,
                    Text::new(
                        format!("its key file {} is missing", self.path.display()),
                        format!("seine Schlüsseldatei {} fehlt", self.path.display()),
                    ),
                ));
            }
        };
        if !KEY_FILE_LOGGED.swap(true, Ordering::Relaxed) {
            log::info!(
                "the token cache key is kept in the key file {} (no OS keyring in use)",
                self.path.display()
            );
        }
        Ok(key)
    }

    fn read(&self) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.path, &e)),
        };
        self.warn_if_exposed(&file);
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        file.take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io_err(&self.path, &e))?;
        let Ok(key) = <[u8; KEY_LEN]>::try_from(buf.as_slice()) else {
            return Err(Error::new(
                ErrorKind::CacheCorrupt,
                Text::new(
                    format!(
                        "the cache key file {} is damaged (not 32 bytes)",
                        self.path.display()
                    ),
                    format!(
                        "die Cache-Schlüsseldatei {} ist beschädigt (nicht 32 Byte)",
                        self.path.display()
                    ),
                ),
            )
            .with_hint(Text::new(
                "Nothing was overwritten. mailoauth_cache_reset moves it and the records it protects aside; accounts then need a new sign-in.",
                "Es wurde nichts überschrieben. mailoauth_cache_reset legt sie und die damit geschützten Einträge beiseite; danach ist für die Konten eine neue Anmeldung nötig.",
            )));
        };
        Ok(Some(Zeroizing::new(key)))
    }

    /// Logs (once) when the key file admits more than it should: others
    /// than the owner (`user`), or than the owner and group (`machine`).
    fn warn_if_exposed(&self, file: &std::fs::File) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            static WARNED: AtomicBool = AtomicBool::new(false);
            let mode = file.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
            let too_open = if self.shared { 0o027 } else { 0o077 };
            if mode & too_open != 0 && !WARNED.swap(true, Ordering::Relaxed) {
                log::warning!(
                    "the cache key file {} has mode {:o}: others can read the token cache",
                    self.path.display(),
                    mode & 0o777
                );
            }
        }
        #[cfg(not(unix))]
        let _ = file;
    }

    /// Makes the key file: a random key written to a temporary file in the
    /// folder (0600, or 0640 for `machine`), synced, then linked into place
    /// only if no key file exists yet. The loser of a race reads the winner's.
    fn create(&self) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        super::file_store::ensure_dir(dir, self.shared)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..])
            .map_err(|e| Error::internal(format!("no random numbers from the OS: {e}")))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".mailoauth.key.")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| io_err(dir, &e))?;
        super::file_store::set_file_mode(tmp.as_file(), self.shared)
            .map_err(|e| io_err(tmp.path(), &e))?;
        tmp.write_all(&key[..])
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io_err(tmp.path(), &e))?;
        match tmp.persist_noclobber(&self.path) {
            Ok(_) => {
                super::file_store::sync_dir(dir);
                Ok(key)
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                key.zeroize();
                self.read()?
                    .ok_or_else(|| io_err(&self.path, &std::io::ErrorKind::NotFound.into()))
            }
            Err(e) => Err(io_err(&self.path, &e.error)),
        }
    }
}

/// Counts serialised bytes.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `CacheCorrupt` for record `what`, with the reason.
pub(crate) fn corrupt(what: &str, reason: Text) -> Error {
    Error::new(
        ErrorKind::CacheCorrupt,
        Text::new(
            format!("the cache record {what} cannot be read: {}", reason.en),
            format!("der Cache-Eintrag {what} ist nicht lesbar: {}", reason.de),
        ),
    )
    .with_hint(Text::new(
        "Nothing was overwritten. mailoauth_cache_reset moves unreadable records aside; the account then needs a new sign-in.",
        "Es wurde nichts überschrieben. mailoauth_cache_reset legt unlesbare Einträge beiseite; danach ist für das Konto eine neue Anmeldung nötig.",
    ))
}

/// `CacheIo` for a file operation.
pub(crate) fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::CacheIo,
        Text::new(
            format!("token cache file {}: {e}", path.display()),
            format!("Token-Cache-Datei {}: {e}", path.display()),
        ),
    )
}

fn missing_host_key() -> Error {
    Error::new(
        ErrorKind::InvalidState,
        Text::new(
            "cache.protection is 'key', but no cache key was set",
            "cache.protection ist 'key', aber es wurde kein Cache-Schlüssel gesetzt",
        ),
    )
    .with_hint(Text::new(
        "call mailoauth_context_set_cache_key with the 32-byte key before using the cache",
        "rufen Sie mailoauth_context_set_cache_key mit dem 32-Byte-Schlüssel auf, bevor der Cache benutzt wird",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_codec(k: u8) -> Codec {
        Codec::new(Protection::Key, None)
            .and_then(|c| c.with_key(&[k; 32]))
            .expect("codec")
    }

    #[test]
    fn header_is_readable_and_bound_to_the_body() {
        let c = key_codec(7);
        let blob = c.seal(b"{\"a\":1}").expect("seal");
        let text =
            String::from_utf8_lossy(&blob[..blob.iter().position(|&b| b == b'\n').unwrap_or(0)])
                .to_string();
        assert!(text.starts_with("mailoauth-cache/1 protection=key alg=xchacha20poly1305 kcv="));
        assert_eq!(&c.open("t", &blob).expect("open")[..], b"{\"a\":1}");
        // Changing the header (here: dropping the kcv) breaks authentication.
        let mut changed = blob.to_vec();
        let pos = text.find(" kcv=").expect("kcv");
        changed.drain(pos..text.len());
        let e = c.open("t", &changed).expect_err("altered header");
        assert_eq!(e.kind, ErrorKind::CacheCorrupt);
    }

    #[test]
    fn wrong_key_is_named_as_such() {
        let blob = key_codec(1).seal(b"{}").expect("seal");
        let e = key_codec(2).open("grant:a", &blob).expect_err("wrong key");
        assert_eq!(e.kind, ErrorKind::CacheCorrupt);
        assert!(e.message.en.contains("different key"), "{}", e.message.en);
        assert!(e.message.en.contains("grant:a"));
    }

    #[test]
    fn missing_key_is_invalid_state_with_a_hint() {
        let c = Codec::new(Protection::Key, None).expect("codec");
        let e = c.seal(b"{}").expect_err("no key");
        assert_eq!(e.kind, ErrorKind::InvalidState);
        assert!(
            e.hint
                .as_ref()
                .is_some_and(|h| h.en.contains("mailoauth_context_set_cache_key"))
        );
        assert_eq!(
            Codec::new(Protection::Key, None)
                .and_then(|c| c.with_key(&[0; 31]))
                .expect_err("short")
                .kind,
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn versions_and_damage() {
        let c = Codec::new(Protection::None, None).expect("codec");
        let v2 = b"mailoauth-cache/2 protection=none alg=none\n{}";
        assert_eq!(
            c.open("x", v2).expect_err("v2").kind,
            ErrorKind::CacheVersion
        );
        // A future format may change everything after the version.
        assert_eq!(
            c.open("x", b"mailoauth-cache/17\x00\x01")
                .expect_err("v17")
                .kind,
            ErrorKind::CacheVersion
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"mailoauth-cache/",
            b"mailoauth-cache/0 protection=none alg=none\n{}",
            b"mailoauth-cache/1 protection=none alg=none",
            b"mailoauth-cache/1 protection=none\n{}",
            b"mailoauth-cache/1 protection=none alg=none\x07\n{}",
            b"mailoauth-cache/1 protection=key alg=xchacha20poly1305\n{}",
        ] {
            assert_eq!(
                c.open("x", bad).expect_err("bad").kind,
                ErrorKind::CacheCorrupt,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let e = c
            .decode::<serde_json::Value>(
                "x",
                b"mailoauth-cache/1 protection=none alg=none\n{\"secret\": ",
            )
            .expect_err("parse");
        assert_eq!(e.kind, ErrorKind::CacheCorrupt);
        assert!(!e.message.en.contains("secret"));
    }

    #[test]
    fn unknown_header_fields_are_ignored() {
        let c = Codec::new(Protection::None, None).expect("codec");
        let v: serde_json::Value = c
            .decode(
                "x",
                b"mailoauth-cache/1 protection=none future=yes alg=none\n{\"a\":2}",
            )
            .expect("decode");
        assert_eq!(v["a"], 2);
    }
}
