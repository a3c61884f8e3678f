//! The guard around every export: clears the last error, marks the thread as
//! inside a host call (for the logger), and turns a panic into
//! `MAILOAUTH_INTERNAL` instead of letting it abort the host. It wraps the
//! body, not the signature, so cbindgen still reads the function.

use super::result::MAILOAUTH_INTERNAL;

/// The value an export returns when its body panicked.
pub(crate) trait OnPanic {
    fn on_panic() -> Self;
}

impl OnPanic for i32 {
    fn on_panic() -> Self {
        MAILOAUTH_INTERNAL
    }
}

impl OnPanic for u32 {
    fn on_panic() -> Self {
        0
    }
}

impl OnPanic for () {
    fn on_panic() -> Self {}
}

impl<T> OnPanic for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}

/// The body of an ordinary export: clears the last error first.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        $crate::ffi::error::clear();
        ffi_boundary_keep_error! { $($body)* }
    }};
}

/// The body of a last-error getter or a free function: the last error stays.
macro_rules! ffi_boundary_keep_error {
    ($($body:tt)*) => {{
        let _host_call = $crate::log::HostCall::enter();
        let _sigpipe = $crate::sigpipe::HostThreadGuard::enter();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(v) => v,
            Err(payload) => {
                $crate::ffi::error::set_panic(&*payload);
                $crate::ffi::boundary::OnPanic::on_panic()
            }
        }
    }};
}

/// Unwraps a `Result<T, Error>` inside an export, or stores the error as the
/// last error (in `$lang`) and returns its code.
macro_rules! try_ffi {
    ($expr:expr, $lang:expr) => {
        match $expr {
            Ok(v) => v,
            Err(e) => return $crate::ffi::error::set(&e, $lang),
        }
    };
    ($expr:expr) => {
        try_ffi!($expr, $crate::i18n::Language::En)
    };
}

#[cfg(test)]
mod tests {
    use super::super::result::{MAILOAUTH_INTERNAL, MAILOAUTH_OK};

    fn exported_like(panic: bool) -> i32 {
        ffi_boundary! {
            if panic {
                std::panic::panic_any("deliberate test panic: Grüße");
            }
            MAILOAUTH_OK
        }
    }

    #[test]
    fn a_panic_becomes_internal_with_its_message() {
        assert_eq!(exported_like(true), MAILOAUTH_INTERNAL);
        let json = crate::ffi::error::last_json();
        assert!(json.contains("INTERNAL"));
        assert!(json.contains("deliberate test panic: Grüße"));
        // The next successful call clears it.
        assert_eq!(exported_like(false), MAILOAUTH_OK);
        assert_eq!(crate::ffi::error::last_json(), r#"{"code":0,"name":"OK"}"#);
    }
}
