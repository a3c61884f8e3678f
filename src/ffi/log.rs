//! The host's logger: one per process, levels 1 (error) .. 5 (trace).

use std::ffi::{CString, c_char, c_void};
use std::sync::Arc;

use super::result::MAILOAUTH_OK;
use crate::error::{Error, ErrorKind};
use crate::i18n::{Language, Text};
use crate::log::{Level, set_sink};

/// A log callback: `user_data` as registered, the level (1 error, 2 warning,
/// 3 info, 4 debug, 5 trace) and a UTF-8 message valid only during the call.
pub type mailoauth_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char)>;

/// The host's pointer, passed back untouched.
struct UserData(*mut c_void);
impl UserData {
    /// Taking `&self` makes closures capture the whole (Send + Sync) wrapper.
    fn get(&self) -> *mut c_void {
        self.0
    }
}

// SAFETY: the pointer is only handed back to the host's own callback; the
// contract makes the host responsible for what it points to.
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// Installs, replaces or (with `fn` NULL or `max_level` 0) removes the
/// process-wide logger. Messages never contain tokens, codes, secrets,
/// passwords or SASL lines.
/// @param max_level the most detailed level delivered: 0 (off) to 5 (trace);
///        anything else → MAILOAUTH_INVALID_ARGUMENT.
/// @param fn        the callback, or NULL to turn logging off.
/// @param user_data passed to every call of `fn`.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, or MAILOAUTH_INVALID_STATE
///         when called from inside a log callback.
/// Returns only when no call of the previous logger is still running, so the
/// host may release the old `user_data` right afterwards. Callbacks run on a
/// thread that is inside a call into the library, must return quickly and
/// must not call into the library.
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_set_logger(
    max_level: i32,
    r#fn: mailoauth_log_fn,
    user_data: *mut c_void,
) -> i32 {
    ffi_boundary! {
        if !(0..=5).contains(&max_level) {
            return super::error::set(
                &Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        format!("max_level {max_level} is not 0 (off) to 5 (trace)"),
                        format!("max_level {max_level} ist nicht 0 (aus) bis 5 (trace)"),
                    ),
                ),
                Language::En,
            );
        }
        let level = Level::from_i32(max_level);
        let sink = match (level, r#fn) {
            (Some(_), Some(f)) => {
                let user_data = UserData(user_data);
                let sink: crate::log::Sink = Arc::new(move |level: Level, message: &str| {
                    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
                    // SAFETY: the host registered `f` for exactly this call shape.
                    unsafe { f(user_data.get(), level as i32, text.as_ptr()) };
                });
                Some(sink)
            }
            _ => None,
        };
        match set_sink(level, sink) {
            Ok(()) => MAILOAUTH_OK,
            Err(_) => super::error::set(
                &Error::new(
                    ErrorKind::InvalidState,
                    Text::new(
                        "mailoauth_set_logger must not be called from inside the log callback",
                        "mailoauth_set_logger darf nicht aus dem Log-Callback aufgerufen werden",
                    ),
                ),
                Language::En,
            ),
        }
    }
}
