//! mailoauth: OAuth2 ("Modern Authentication") for legacy applications that
//! send mail over SMTP and poll mailboxes over IMAP and POP3, with Microsoft
//! Entra ID and Exchange Online in mind.
//!
//! The safe Rust core (`config`, `context`, …) knows nothing of C; the
//! `extern "C"` surface described in `include/mailoauth.h` lives in [`ffi`].

pub mod account_test;
pub mod auth;
pub mod cache;
pub mod config;
pub mod consent;
pub mod context;
pub mod diagnose;
pub mod error;
pub mod i18n;
pub mod log;
pub mod mailbox;
pub mod protocol;
pub mod request;
pub mod secret;
mod sigpipe;
pub mod smtp;
pub mod tls;
pub mod tokens;

pub mod ffi;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "foreign-allocator")]
mod foreign_alloc;

pub use config::Config;
pub use context::Context;
pub use error::{Error, ErrorKind, Result};
