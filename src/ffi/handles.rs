//! Handle tables. A handle given to the host is the address of a small
//! allocation that the table owns, mapped to the shared object it stands
//! for. Looking a handle up yields a reference-counted clone, so a call keeps
//! its object alive; a freed, stale or foreign pointer is simply not in the
//! table and gets `MAILOAUTH_INVALID_ARGUMENT` instead of a crash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use once_cell::sync::Lazy;

use crate::error::{Error, ErrorKind};
use crate::i18n::Text;

struct Slot<T> {
    /// Keeps the handle's address unique while it is live.
    _address: Box<u8>,
    value: Arc<T>,
}

type Table<T> = HashMap<usize, Slot<T>>;

pub(crate) struct Registry<T>(Lazy<Mutex<Table<T>>>);

impl<T> Registry<T> {
    pub const fn new() -> Self {
        Self(Lazy::new(|| Mutex::new(HashMap::new())))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers `value` and returns its new handle.
    pub fn insert<H>(&self, value: Arc<T>) -> *mut H {
        let address = Box::new(0u8);
        let key = &*address as *const u8 as usize;
        self.table().insert(
            key,
            Slot {
                _address: address,
                value,
            },
        );
        key as *mut H
    }

    /// The object behind a live handle.
    pub fn get<H>(&self, handle: *const H, name: &str) -> Result<Arc<T>, Error> {
        if handle.is_null() {
            return Err(super::strings::null_argument(name));
        }
        self.table()
            .get(&(handle as usize))
            .map(|s| s.value.clone())
            .ok_or_else(|| stale(name))
    }

    /// Unregisters a handle; None when it was not live.
    pub fn remove<H>(&self, handle: *const H) -> Option<Arc<T>> {
        if handle.is_null() {
            return None;
        }
        self.table().remove(&(handle as usize)).map(|s| s.value)
    }
}

fn stale(name: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        Text::new(
            format!(
                "argument '{name}' is not a live handle (already freed, or not from this library)"
            ),
            format!(
                "Argument '{name}' ist kein gültiges Handle (schon freigegeben oder nicht von dieser Bibliothek)"
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H;

    #[test]
    fn lookup_insert_remove() {
        static R: Registry<String> = Registry::new();
        let h: *mut H = R.insert(Arc::new("x".to_string()));
        assert_eq!(*R.get(h, "h").unwrap(), "x");
        assert!(R.remove(h).is_some());
        assert!(R.remove(h).is_none());
        assert_eq!(R.get(h, "h").unwrap_err().kind, ErrorKind::InvalidArgument);
        assert_eq!(
            R.get(std::ptr::null::<H>(), "h").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }
}
