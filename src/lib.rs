//! mailoauth
