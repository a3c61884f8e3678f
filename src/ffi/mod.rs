//! The C ABI: thin `extern "C"` exports over the safe core. Nothing outside
//! this module knows about C; `#[unsafe(no_mangle)]` appears only here.
//!
//! The contract (names, numbers, JSON keys) is `shared/ABI.md`; how the
//! exports are written follows `reference/ffi-conventions.md`: a panic guard
//! around every body, NULL and UTF-8 checks that name the parameter, outputs
//! written only on success, a thread-local last error.
#![allow(non_camel_case_types)]
#![deny(unsafe_op_in_unsafe_fn)]
// Each export's doc comment states what its pointers must be (the C
// header's reader never sees a Rust "# Safety" heading).
#![allow(clippy::missing_safety_doc)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Tests may unwrap; the library build keeps the lints above.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[macro_use]
mod boundary;
pub mod account_test;
pub mod context;
pub mod error;
mod handles;
pub mod library;
pub mod log;
pub mod mailbox;
pub mod memory;
pub mod op;
pub mod result;
pub mod smtp;
pub mod store;
mod strings;
pub mod token;

pub use result::*;

/// The version of this C ABI. Hosts pass the `MAILOAUTH_ABI_VERSION` of the
/// header they were built with to mailoauth_context_new(); a host built
/// against an older header works with a newer library.
pub const MAILOAUTH_ABI_VERSION: u32 = 1;
