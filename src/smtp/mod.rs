//! SMTP submission with XOAUTH2: request parsing, message composition, the
//! project's own connections (TCP_NODELAY, rustls, AUTH by hand) and a small
//! per-mailbox pool. The C exports live in `ffi` once the whole feature is in.

pub mod compose;
pub mod connection;
pub mod request;
