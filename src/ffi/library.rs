//! Library-wide exports: version, ABI version, result names, last error.

use std::ffi::c_char;

use super::result::{MAILOAUTH_OK, name_of};
use super::{MAILOAUTH_ABI_VERSION, error, memory};

/// The library's version, e.g. "0.1.0". Static; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_version() -> *const c_char {
    ffi_boundary_keep_error! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
    }
}

/// The ABI version of this build (equal to MAILOAUTH_ABI_VERSION of the
/// header it was built with). Bindings compare it when they load.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_abi_version() -> u32 {
    ffi_boundary_keep_error! {
        MAILOAUTH_ABI_VERSION
    }
}

/// The English name of a result code ("CONSENT_REQUIRED"), or "UNKNOWN".
/// Static; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_result_str(code: i32) -> *const c_char {
    ffi_boundary_keep_error! {
        name_of(code).as_ptr()
    }
}

/// Copies the calling thread's last error as JSON into `*out_json`:
/// `{"code":…,"name":…,"message":…}` plus hint, provider_error,
/// provider_code, server_reply, correlation_id, retry_after_s and rejected
/// when known; `{"code":0,"name":"OK"}` when the last call succeeded.
/// @param out_json receives the JSON; NULL → MAILOAUTH_INVALID_ARGUMENT,
///        which then becomes the last error (naming `out_json`).
/// @return MAILOAUTH_OK or MAILOAUTH_INVALID_ARGUMENT.
/// Returns immediately.
/// The returned string must be released with mailoauth_string_free().
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_last_error(out_json: *mut *mut c_char) -> i32 {
    ffi_boundary_keep_error! {
        if out_json.is_null() {
            return error::set(&super::strings::null_argument("out_json"), crate::i18n::Language::En);
        }
        match memory::string_into_raw(error::last_json()) {
            Ok(s) => {
                // SAFETY: out_json was checked non-NULL; written only on success.
                unsafe { *out_json = s };
                MAILOAUTH_OK
            }
            Err(e) => error::set(&e, crate::i18n::Language::En),
        }
    }
}

/// Copies the calling thread's last error message into `buf`, truncated at a
/// UTF-8 character boundary and always NUL-terminated (when `buf_len` > 0).
/// @param buf     destination; may be NULL when `buf_len` is 0 (size query).
/// @param buf_len the size of `buf` in bytes; 0 or negative writes nothing.
/// @return the number of bytes the whole message needs, including its NUL
///         (1 when there is no error).
/// Returns immediately.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_last_error_message(buf: *mut c_char, buf_len: i32) -> i32 {
    ffi_boundary_keep_error! {
        let message = error::last_message();
        let needed = i32::try_from(message.len() + 1).unwrap_or(i32::MAX);
        if buf.is_null() || buf_len <= 0 {
            return needed;
        }
        let room = (buf_len as usize) - 1;
        let mut n = message.len().min(room);
        while !message.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: the host promises `buf` holds `buf_len` bytes; we write
        // n + 1 <= buf_len of them.
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf as *mut u8, n);
            *buf.add(n) = 0;
        }
        needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use crate::i18n::{Language, Text};

    #[test]
    fn message_copy_truncates_at_character_boundaries() {
        error::set(
            &Error::new(ErrorKind::Busy, Text::new("x", "Größe")),
            Language::De,
        );
        // SAFETY: size query with NULL/0.
        let needed = unsafe { mailoauth_last_error_message(std::ptr::null_mut(), 0) };
        assert_eq!(needed as usize, "Größe".len() + 1);
        let mut buf = [0x55 as c_char; 4];
        // "Gr" + first byte of 'ö' would fit in 3 bytes: must stop at "Gr".
        // SAFETY: buf has 4 bytes.
        let n = unsafe { mailoauth_last_error_message(buf.as_mut_ptr(), 4) };
        assert_eq!(n, needed);
        let got: Vec<u8> = buf.iter().map(|c| *c as u8).collect();
        assert_eq!(&got[..3], b"Gr\0");
    }
}
