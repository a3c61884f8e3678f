//! Benchmarks of mailoauth_token_get through the C ABI, against the local
//! identity imitation:
//! - warm: the cached access token, file store, coherent with other
//!   processes (one stat of the cache file per call);
//! - refresh: a forced refresh round trip (HTTP to the imitation on
//!   loopback, rotation, durable write of the cache, fsync included).
//!
//! Run: `cargo bench --bench token_get`. MSAL Python's in-process cache hit
//! costs about 11 µs on these machines (reference figure).

#[path = "../tests/support/mod.rs"]
mod support;

use std::ffi::{CStr, CString, c_char};
use std::hint::black_box;
use std::ptr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mailoauth::ffi::MAILOAUTH_ABI_VERSION;
use mailoauth::ffi::context::{mailoauth_context, mailoauth_context_free, mailoauth_context_new};
use mailoauth::ffi::memory::mailoauth_secret_free;
use mailoauth::ffi::token::{MAILOAUTH_TOKEN_FORCE_REFRESH, mailoauth_token_get};
use serde_json::json;
use support::*;

struct Setup {
    _idp: Idp,
    _dir: tempfile::TempDir,
    ctx: *mut mailoauth_context,
}

fn setup(protection: &str) -> Setup {
    let idp = Idp::start();
    idp.settings(json!({"auto_consent": true}));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = idp.config_json(
        json!({"cache": {"path": dir.path().to_string_lossy(), "protection": protection}}),
    );
    // Consent once through the core API (the browser is imitated by a GET).
    let core = mailoauth::Context::new(parse_config(&config)).expect("context");
    let op = core
        .consent_begin(r#"{"account":"alice@contoso.test","flow":"browser"}"#)
        .expect("consent");
    let url = op.info()["authorize_url"]
        .as_str()
        .expect("url")
        .to_string();
    follow_to_listener(&authorize_redirect(&url));
    core.consent_settle(&op, Duration::from_secs(20))
        .expect("finished")
        .expect("consent stored");
    drop(core);
    let c = CString::new(config).expect("config");
    let mut ctx = ptr::null_mut();
    // SAFETY: valid C string and out pointer.
    let rc = unsafe { mailoauth_context_new(c.as_ptr(), MAILOAUTH_ABI_VERSION, &mut ctx) };
    assert_eq!(rc, 0);
    Setup {
        _idp: idp,
        _dir: dir,
        ctx,
    }
}

fn get(ctx: *mut mailoauth_context, account: &CStr, protocols: &CStr, flags: i32) {
    let mut tok: *mut c_char = ptr::null_mut();
    // SAFETY: valid handle, C strings and out pointer.
    let rc =
        unsafe { mailoauth_token_get(ctx, account.as_ptr(), protocols.as_ptr(), flags, &mut tok) };
    assert_eq!(rc, 0);
    black_box(tok);
    mailoauth_secret_free(tok);
}

fn benches(c: &mut Criterion) {
    let account = c"alice@contoso.test";
    for protection in ["user", "none"] {
        let s = setup(protection);
        c.bench_function(&format!("token_get warm (file store, {protection})"), |b| {
            b.iter(|| get(s.ctx, account, c"imap", 0))
        });
        c.bench_function(
            &format!("token_get forced refresh round trip ({protection})"),
            |b| b.iter(|| get(s.ctx, account, c"imap", MAILOAUTH_TOKEN_FORCE_REFRESH)),
        );
        mailoauth_context_free(s.ctx);
    }
}

criterion_group! {
    name = token_get;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(5));
    targets = benches
}
criterion_main!(token_get);
