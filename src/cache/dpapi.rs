//! DPAPI (Windows only): `user` protection is CryptProtectData for the
//! current user, `machine` adds CRYPTPROTECT_LOCAL_MACHINE, so that every
//! account of the machine can decrypt the blob. With `machine` the file's
//! ACL is therefore the only barrier: the folder must admit only SYSTEM,
//! Administrators and the accounts that share the cache (%ProgramData%
//! lets every user read by default; see the module `codec`).
//!
//! Not compiled on our Linux machines (no Windows target there); it was
//! type-checked there in a scratch crate with windows-sys as a normal
//! dependency. `entropy` is the record's header line.

use std::io;
use std::ptr::{null, null_mut};

use windows_sys::Win32::Foundation::{HLOCAL, LocalFree};
use windows_sys::Win32::Security::Cryptography::{
    CRYPT_INTEGER_BLOB, CRYPTPROTECT_LOCAL_MACHINE, CRYPTPROTECT_UI_FORBIDDEN, CryptProtectData,
    CryptUnprotectData,
};
use zeroize::{Zeroize, Zeroizing};

fn blob(d: &[u8]) -> io::Result<CRYPT_INTEGER_BLOB> {
    let len = u32::try_from(d.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(CRYPT_INTEGER_BLOB {
        cbData: len,
        pbData: d.as_ptr().cast_mut(),
    })
}

/// Takes DPAPI's output: copies it out, zeroes and frees the original.
fn take(out: CRYPT_INTEGER_BLOB) -> Zeroizing<Vec<u8>> {
    // SAFETY: DPAPI returned a LocalAlloc'd buffer of cbData bytes, freed once here.
    unsafe {
        let s = std::slice::from_raw_parts_mut(out.pbData, out.cbData as usize);
        let v = Zeroizing::new(s.to_vec());
        s.zeroize();
        LocalFree(out.pbData as HLOCAL);
        v
    }
}

pub(crate) fn protect(data: &[u8], entropy: &[u8], machine: bool) -> io::Result<Vec<u8>> {
    let (inp, ent) = (blob(data)?, blob(entropy)?);
    let mut out = CRYPT_INTEGER_BLOB {
        cbData: 0,
        pbData: null_mut(),
    };
    let flags = CRYPTPROTECT_UI_FORBIDDEN
        | if machine {
            CRYPTPROTECT_LOCAL_MACHINE
        } else {
            0
        };
    // SAFETY: the input blobs point into live slices that DPAPI only reads.
    if unsafe { CryptProtectData(&inp, null(), &ent, null(), null(), flags, &mut out) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(take(out).to_vec())
}

pub(crate) fn unprotect(data: &[u8], entropy: &[u8]) -> io::Result<Zeroizing<Vec<u8>>> {
    let (inp, ent) = (blob(data)?, blob(entropy)?);
    let mut out = CRYPT_INTEGER_BLOB {
        cbData: 0,
        pbData: null_mut(),
    };
    // SAFETY: as in protect; no description is asked for.
    let ok = unsafe {
        CryptUnprotectData(
            &inp,
            null_mut(),
            &ent,
            null(),
            null(),
            CRYPTPROTECT_UI_FORBIDDEN,
            &mut out,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(take(out))
}
