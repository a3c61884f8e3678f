//! `fetch_to_file`'s target: the message is written in chunks as it is
//! read from the server into a temporary file in the target's directory,
//! which is synced and renamed over the target only when the whole message
//! is there. A failed or cancelled fetch leaves the target untouched and
//! removes the temporary file.
//!
//! A write error is remembered here (the network reader only sees "the
//! sink failed") so that the caller can report the file, not the
//! connection, as the cause.

use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::request::shown;

/// A message file being written.
pub struct MessageFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    written: u64,
    failed: Option<io::Error>,
}

fn file_error(path: &Path, e: &io::Error) -> Error {
    let p = shown(&path.to_string_lossy());
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!("cannot write the file '{p}': {e}"),
            format!("die Datei '{p}' kann nicht geschrieben werden: {e}"),
        ),
    )
}

impl MessageFile {
    /// A temporary file beside `path` (nothing is written to `path` yet).
    pub fn create(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if path.file_name().is_none() {
            return Err(file_error(
                path,
                &io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
            ));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".mailoauth-fetch-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| file_error(path, &e))?;
        Ok(Self {
            path: path.to_path_buf(),
            tmp,
            written: 0,
            failed: None,
        })
    }

    /// Starts over (a retry after a reconnect).
    pub fn reset(&mut self) -> Result<()> {
        self.failed = None;
        self.written = 0;
        let f = self.tmp.as_file_mut();
        f.set_len(0)
            .and_then(|_| f.rewind())
            .map_err(|e| file_error(&self.path, &e))
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The write error that stopped a fetch, as the caller's error.
    pub fn failure(&self) -> Option<Error> {
        self.failed.as_ref().map(|e| file_error(&self.path, e))
    }

    /// Writes a message held in memory (read ahead) in one go.
    pub fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.write_all(bytes)
            .map_err(|e| self.failure().unwrap_or_else(|| file_error(&self.path, &e)))
    }

    /// Syncs the data, renames the file over the target and syncs the
    /// directory (Unix), so that the target is either the old file or the
    /// whole message.
    pub fn commit(mut self) -> Result<()> {
        if let Some(e) = self.failure() {
            return Err(e);
        }
        let path = self.path.clone();
        self.tmp
            .as_file_mut()
            .flush()
            .and_then(|_| self.tmp.as_file().sync_all())
            .map_err(|e| file_error(&path, &e))?;
        self.tmp
            .persist(&path)
            .map_err(|e| file_error(&path, &e.error))?;
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            // Best effort: the rename is durable once the directory is.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Write for MessageFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(io::Error::other("the message file failed earlier"));
        }
        match self.tmp.as_file_mut().write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                self.failed = Some(e);
                Err(io::Error::new(
                    kind,
                    "the message file could not be written",
                ))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_renamed_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.eml");
        std::fs::write(&target, b"old").unwrap();
        let mut f = MessageFile::create(&target).unwrap();
        f.write_all(b"partial").unwrap();
        f.reset().unwrap();
        f.put(b"whole message").unwrap();
        assert_eq!(f.written(), 13);
        // Nothing at the target until the commit.
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"whole message");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("m.eml");
        let mut f = MessageFile::create(&target).unwrap();
        f.put(b"abc").unwrap();
        drop(f);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_targets_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/m.eml");
        let e = MessageFile::create(&missing).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.en.contains("cannot write the file"));
        // A directory as the target: the rename fails, the directory stays.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("keep"), b"1").unwrap();
        let mut g = MessageFile::create(&sub).unwrap();
        g.put(b"x").unwrap();
        assert_eq!(g.commit().unwrap_err().kind, ErrorKind::InvalidArgument);
        assert!(sub.join("keep").exists());
    }
}
