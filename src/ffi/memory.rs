//! Memory handed to the host. The library keeps every returned buffer in a
//! table with its true size, so a free takes nothing on trust: a wrong
//! length, a string the host wrote into, a double free or a foreign pointer
//! cannot corrupt the heap (an unknown pointer is ignored and logged).
//! Secrets are zeroed before their memory is released.

use std::collections::HashMap;
use std::ffi::c_char;
use std::sync::{Mutex, PoisonError};

use once_cell::sync::Lazy;
use zeroize::Zeroize;

use crate::error::{Error, ErrorKind};
use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Secret,
    Bytes,
}

struct Block {
    data: Box<[u8]>,
    kind: Kind,
}

static BLOCKS: Lazy<Mutex<HashMap<usize, Block>>> = Lazy::new(|| Mutex::new(HashMap::new()));

fn register(data: Box<[u8]>, kind: Kind) -> *mut u8 {
    let ptr = data.as_ptr() as *mut u8;
    BLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(ptr as usize, Block { data, kind });
    ptr
}

fn nul_terminated(mut bytes: Vec<u8>) -> Result<Box<[u8]>, Error> {
    if bytes.contains(&0) {
        bytes.zeroize();
        return Err(Error::internal(
            "a returned string contained a NUL character",
        ));
    }
    bytes.push(0);
    Ok(bytes.into_boxed_slice())
}

/// Hands a string to the host (freed with mailoauth_string_free).
pub(crate) fn string_into_raw(s: String) -> Result<*mut c_char, Error> {
    Ok(register(nul_terminated(s.into_bytes())?, Kind::String) as *mut c_char)
}

/// Writes a string into a host's output pointer (checked non-NULL before
/// any work, see `strings::require_out`).
///
/// # Safety
/// `out` is non-NULL and points to writable storage for one pointer.
pub(crate) unsafe fn put_string(out: *mut *mut c_char, s: String) -> Result<(), Error> {
    let raw = string_into_raw(s)?;
    // SAFETY: per the caller's contract.
    unsafe { *out = raw };
    Ok(())
}

/// Hands a secret to the host (freed with mailoauth_secret_free, which zeroes it).
#[allow(dead_code)]
pub(crate) fn secret_into_raw(s: Secret) -> Result<*mut c_char, Error> {
    Ok(register(nul_terminated(s.into_exposed().into_bytes())?, Kind::Secret) as *mut c_char)
}

/// Hands bytes to the host (freed with mailoauth_bytes_free). An empty
/// buffer still gets a unique one-byte allocation, so its pointer is never
/// NULL and never shared.
#[allow(dead_code)]
pub(crate) fn bytes_into_raw(v: Vec<u8>) -> Result<(*mut u8, i64), Error> {
    let len = i64::try_from(v.len())
        .map_err(|_| Error::plain(ErrorKind::TooLarge, "buffer too large"))?;
    let data = if v.is_empty() {
        vec![0u8].into_boxed_slice()
    } else {
        v.into_boxed_slice()
    };
    Ok((register(data, Kind::Bytes), len))
}

/// Releases a buffer the library handed out. Returns false when the pointer
/// was not (or no longer) one of ours.
fn release(ptr: *const u8, expected: Kind) -> bool {
    if ptr.is_null() {
        return true;
    }
    let block = BLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&(ptr as usize));
    match block {
        Some(mut b) => {
            if b.kind == Kind::Secret || expected == Kind::Secret {
                b.data.zeroize();
            }
            if b.kind != expected {
                crate::log::debug!(
                    "a {:?} buffer was freed with the {:?} free function",
                    b.kind,
                    expected
                );
            }
            true
        }
        None => {
            crate::log::warning!(
                "a free function was given a pointer this library did not hand out (or freed twice); ignored"
            );
            false
        }
    }
}

/// Frees a string returned by this library. NULL is a no-op; a pointer the
/// library did not return (or already freed) is ignored. Any thread; never
/// blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_string_free(s: *mut c_char) {
    ffi_boundary_keep_error! {
        release(s as *const u8, Kind::String);
    }
}

/// Frees a token or secret returned by this library after overwriting it
/// with zeros. NULL is a no-op; unknown pointers are ignored. Any thread;
/// never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_secret_free(s: *mut c_char) {
    ffi_boundary_keep_error! {
        release(s as *const u8, Kind::Secret);
    }
}

/// Frees a byte buffer returned by this library. `len` is accepted for
/// symmetry but not trusted: the library knows each buffer's size. NULL is
/// a no-op; unknown pointers are ignored. Any thread; never blocks.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_bytes_free(p: *mut u8, len: i64) {
    ffi_boundary_keep_error! {
        let _ = len;
        release(p as *const u8, Kind::Bytes);
    }
}

#[cfg(test)]
pub(crate) fn is_live(ptr: *const u8) -> bool {
    BLOCKS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains_key(&(ptr as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_bytes_round_trip_and_double_free_is_harmless() {
        let p = string_into_raw("hello".into()).unwrap();
        assert!(is_live(p as *const u8));
        mailoauth_string_free(p);
        assert!(!is_live(p as *const u8));
        mailoauth_string_free(p);
        let (b, len) = bytes_into_raw(Vec::new()).unwrap();
        assert_eq!(len, 0);
        assert!(!b.is_null());
        mailoauth_bytes_free(b, 12345);
        assert!(!is_live(b));
    }

    #[test]
    fn interior_nul_is_refused() {
        assert!(string_into_raw("a\0b".into()).is_err());
    }
}
