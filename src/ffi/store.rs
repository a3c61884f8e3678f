//! The host store: the token cache kept in the host's own database through
//! three callbacks, one blob per key (`grant:<account>`,
//! `poll:<account>/<protocol>/<folder>`).

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, PoisonError, RwLock};

use super::context::{context_of, mailoauth_context};
use super::result::MAILOAUTH_OK;
use super::{error, strings};
use crate::cache::HostCallbacks;
use crate::error::{Error, ErrorKind};
use crate::i18n::{Language, Text};

/// The sink a load callback fills with mailoauth_blob_set(). Opaque; valid
/// only during the load callback it was passed to.
pub struct mailoauth_blob {
    data: Option<Vec<u8>>,
}

/// Loads the blob of `key` into `sink` with mailoauth_blob_set() (leaving it
/// empty when there is none). Returns 0, or a non-zero value that becomes
/// MAILOAUTH_CACHE_IO.
pub type mailoauth_store_load_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        sink: *mut mailoauth_blob,
    ) -> i32,
>;
/// Stores `len` bytes under `key` (0 bytes: remove the blob). Returns 0, or
/// a non-zero value that becomes MAILOAUTH_CACHE_IO.
pub type mailoauth_store_save_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        data: *const u8,
        len: i64,
    ) -> i32,
>;
/// Locks (`lock` 1, waiting up to `timeout_ms`) or unlocks (`lock` 0) `key`.
/// Returns 0, or non-zero when the lock was not had in time (MAILOAUTH_BUSY).
pub type mailoauth_store_lock_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const c_char,
        lock: i32,
        timeout_ms: i32,
    ) -> i32,
>;

/// The largest blob a load callback may hand over (grants are a few KB,
/// poll states at most a few MB).
const MAX_BLOB_BYTES: i64 = 64 * 1024 * 1024;

thread_local! {
    /// The sink of the load callback running on this thread, so that
    /// mailoauth_blob_set can refuse any other pointer.
    static ACTIVE_SINK: Cell<usize> = const { Cell::new(0) };
}

struct Callbacks {
    load: unsafe extern "C" fn(*mut c_void, *const c_char, *mut mailoauth_blob) -> i32,
    save: unsafe extern "C" fn(*mut c_void, *const c_char, *const u8, i64) -> i32,
    lock: Option<unsafe extern "C" fn(*mut c_void, *const c_char, i32, i32) -> i32>,
    user_data: *mut c_void,
}

/// The host's callbacks behind a lock: unregistering takes the write side,
/// so it returns only when no callback is running, and afterwards every
/// call finds nothing to call.
pub(crate) struct HostStoreCallbacks {
    inner: RwLock<Option<Callbacks>>,
}

// SAFETY: the function pointers and user_data are the host's; the contract
// makes them callable from any thread that is inside a library call.
unsafe impl Send for HostStoreCallbacks {}
// SAFETY: as above; all access goes through the RwLock.
unsafe impl Sync for HostStoreCallbacks {}

impl HostStoreCallbacks {
    fn revoke(&self) {
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn with<T>(&self, f: impl FnOnce(&Callbacks) -> Result<T, i32>) -> Result<T, i32> {
        let guard = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(cb) => f(cb),
            // Replaced or unregistered: behave like a failing callback.
            None => Err(-1),
        }
    }
}

fn c_key(key: &str) -> Result<CString, i32> {
    CString::new(key).map_err(|_| -2)
}

impl HostCallbacks for HostStoreCallbacks {
    fn load(&self, key: &str) -> Result<Option<Vec<u8>>, i32> {
        let key = c_key(key)?;
        self.with(|cb| {
            let mut sink = mailoauth_blob { data: None };
            let sink_ptr: *mut mailoauth_blob = &mut sink;
            let previous = ACTIVE_SINK.with(|a| a.replace(sink_ptr as usize));
            // SAFETY: the host registered `load` for this call shape; the
            // key and sink live until it returns.
            let rc = unsafe { (cb.load)(cb.user_data, key.as_ptr(), sink_ptr) };
            ACTIVE_SINK.with(|a| a.set(previous));
            if rc != 0 {
                return Err(rc);
            }
            Ok(sink.data.filter(|d| !d.is_empty()))
        })
    }

    fn save(&self, key: &str, data: &[u8]) -> Result<(), i32> {
        let key = c_key(key)?;
        let len = i64::try_from(data.len()).map_err(|_| -3)?;
        self.with(|cb| {
            // SAFETY: the host registered `save` for this call shape; key and
            // data live until it returns.
            let rc = unsafe { (cb.save)(cb.user_data, key.as_ptr(), data.as_ptr(), len) };
            if rc == 0 { Ok(()) } else { Err(rc) }
        })
    }

    fn lock(&self, key: &str, lock: bool, timeout_ms: i32) -> Result<(), i32> {
        let key = c_key(key)?;
        self.with(|cb| match cb.lock {
            None => Ok(()),
            Some(f) => {
                // SAFETY: the host registered `lock` for this call shape.
                let rc = unsafe { f(cb.user_data, key.as_ptr(), i32::from(lock), timeout_ms) };
                if rc == 0 { Ok(()) } else { Err(rc) }
            }
        })
    }

    fn has_lock(&self) -> bool {
        self.with(|cb| Ok(cb.lock.is_some())).unwrap_or(false)
    }
}

/// The registrations per context, so a replacement or context_free can
/// revoke the previous callbacks before returning.
static REGISTERED: once_cell::sync::Lazy<
    std::sync::Mutex<std::collections::HashMap<usize, Arc<HostStoreCallbacks>>>,
> = once_cell::sync::Lazy::new(|| std::sync::Mutex::new(std::collections::HashMap::new()));

/// Revokes a context's host callbacks (at mailoauth_context_free).
pub(crate) fn revoke_for(ctx_key: usize) {
    let old = REGISTERED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&ctx_key);
    if let Some(old) = old {
        old.revoke();
    }
}

/// Routes the token cache (and mailbox poll state) through the host's
/// callbacks instead of files: opaque, already protected blobs, one per key.
/// Use cache protection `key` (mailoauth_context_set_cache_key) so that every
/// machine can read them.
/// @param ctx       the context; NULL or freed → MAILOAUTH_INVALID_ARGUMENT.
/// @param load      required (with `save`); both NULL unregisters (back to files).
/// @param save      required (with `load`).
/// @param lock      optional: brackets every read-modify-write of one key,
///                  so one refresh runs at a time across machines.
/// @param user_data passed to every callback.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_INVALID_STATE.
/// Returns only when no callback of a previous registration is running.
/// Callbacks run only on a thread that is inside a call into the library,
/// never after mailoauth_context_free() returns, and must not call into the
/// library except mailoauth_blob_set().
#[unsafe(no_mangle)]
pub extern "C" fn mailoauth_context_set_store(
    ctx: *mut mailoauth_context,
    load: mailoauth_store_load_fn,
    save: mailoauth_store_save_fn,
    lock: mailoauth_store_lock_fn,
    user_data: *mut c_void,
) -> i32 {
    ffi_boundary! {
        let context = try_ffi!(context_of(ctx));
        let lang = context.language();
        let callbacks = match (load, save) {
            (Some(load), Some(save)) => Some(Arc::new(HostStoreCallbacks {
                inner: RwLock::new(Some(Callbacks { load, save, lock, user_data })),
            })),
            (None, None) => None,
            _ => {
                return error::set(
                    &Error::new(
                        ErrorKind::InvalidArgument,
                        Text::new(
                            "load and save must both be given (or both NULL to unregister)",
                            "load und save müssen beide angegeben werden (oder beide NULL zum Abmelden)",
                        ),
                    ),
                    lang,
                );
            }
        };
        let key = ctx as usize;
        let previous = {
            let mut reg = REGISTERED.lock().unwrap_or_else(PoisonError::into_inner);
            match &callbacks {
                Some(cb) => reg.insert(key, cb.clone()),
                None => reg.remove(&key),
            }
        };
        if let Some(old) = previous {
            old.revoke();
        }
        let as_trait = callbacks.map(|c| c as Arc<dyn HostCallbacks>);
        try_ffi!(context.set_host_store(as_trait), lang);
        MAILOAUTH_OK
    }
}

/// Hands a loaded blob to the library from inside a load callback. The
/// bytes are copied.
/// @param sink the sink passed to the load callback running on this thread;
///        anything else → MAILOAUTH_INVALID_ARGUMENT.
/// @param data the bytes; may be NULL when `len` is 0.
/// @param len  0 .. 64 MiB; negative → MAILOAUTH_INVALID_ARGUMENT, larger →
///        MAILOAUTH_TOO_LARGE.
/// @return MAILOAUTH_OK, MAILOAUTH_INVALID_ARGUMENT, MAILOAUTH_TOO_LARGE.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailoauth_blob_set(
    sink: *mut mailoauth_blob,
    data: *const u8,
    len: i64,
) -> i32 {
    ffi_boundary! {
        let lang = Language::En;
        if sink.is_null() {
            return error::set(&strings::null_argument("sink"), lang);
        }
        if ACTIVE_SINK.with(Cell::get) != sink as usize {
            return error::set(
                &Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        "sink is not the sink of a load callback running on this thread",
                        "sink ist nicht der Empfänger eines auf diesem Thread laufenden Lade-Callbacks",
                    ),
                ),
                lang,
            );
        }
        if len < 0 || (data.is_null() && len > 0) {
            return error::set(
                &Error::new(
                    ErrorKind::InvalidArgument,
                    Text::new(
                        format!("len {len} is negative, or data is NULL with a positive len"),
                        format!("len {len} ist negativ, oder data ist NULL bei positivem len"),
                    ),
                ),
                lang,
            );
        }
        if len > MAX_BLOB_BYTES {
            return error::set(
                &Error::new(
                    ErrorKind::TooLarge,
                    Text::new(
                        format!("a blob of {len} bytes is larger than {MAX_BLOB_BYTES}"),
                        format!("ein Blob von {len} Bytes ist größer als {MAX_BLOB_BYTES}"),
                    ),
                ),
                lang,
            );
        }
        let bytes = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: the host promises `data` holds `len` bytes (checked
            // non-NULL and bounded above).
            unsafe { std::slice::from_raw_parts(data, len as usize) }.to_vec()
        };
        // SAFETY: `sink` is the live sink of the load callback running on
        // this thread (checked above).
        unsafe { (*sink).data = Some(bytes) };
        MAILOAUTH_OK
    }
}
