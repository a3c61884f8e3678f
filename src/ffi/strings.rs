//! Strings crossing the boundary inward: NUL-terminated UTF-8, never
//! repaired, and checked for line breaks where a protocol would carry them.

use std::ffi::{CStr, c_char};

use crate::error::{Error, ErrorKind};
use crate::i18n::Text;

pub(crate) fn null_argument(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!("argument '{name}' is NULL"),
            format!("Argument '{name}' ist NULL"),
        ),
    )
}

/// Refuses a NULL output pointer (before any work is done, so a failed call
/// changes nothing).
pub(crate) fn require_out<T>(p: *mut T, name: &str) -> Result<(), Error> {
    if p.is_null() {
        return Err(null_argument(name));
    }
    Ok(())
}

/// Borrows a required C string as UTF-8.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub(crate) unsafe fn required<'a>(p: *const c_char, name: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return Err(null_argument(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!(
                    "argument '{name}' is not valid UTF-8 (at byte {})",
                    e.valid_up_to()
                ),
                format!(
                    "Argument '{name}' ist kein gültiges UTF-8 (bei Byte {})",
                    e.valid_up_to()
                ),
            ),
        )
    })
}

/// Borrows an optional C string (NULL → None).
///
/// # Safety
/// As [`required`].
#[allow(dead_code)]
pub(crate) unsafe fn optional<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { required(p, name) }.map(Some)
}

/// Refuses CR and LF in a value that ends up in a protocol line (addresses,
/// folder names, ids, header values). NUL cannot occur in a C string.
#[allow(dead_code)]
pub(crate) fn single_line<'a>(value: &'a str, name: &str) -> Result<&'a str, Error> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            Text::new(
                format!("argument '{name}' contains a line break"),
                format!("Argument '{name}' enthält einen Zeilenumbruch"),
            ),
        ));
    }
    Ok(value)
}
