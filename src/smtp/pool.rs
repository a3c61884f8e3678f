//! At most `smtp.max_connections` connections per mailbox and server,
//! behind a semaphore (lettre's pool is no concurrency cap), reused across
//! sends, replaced when the token changes (SMTP allows one AUTH per
//! session), closed when dropped. Idle connections older than
//! [`IDLE_MAX`] are not reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::Security;
use crate::error::{ErrorKind, Result};
use crate::secret::Secret;

use super::compose::Composed;
use super::connection::{Connection, Endpoint, Sent};

/// An idle connection older than this is closed instead of reused
/// (servers drop idle sessions after a few minutes).
pub const IDLE_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    mailbox: String,
    host: String,
    port: u16,
    /// `tls`, `starttls` or `none`.
    security: &'static str,
}

/// Counters for tests and diagnostics.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_opened: AtomicU64,
    pub auth_rejected: AtomicU64,
    pub forced_refreshes: AtomicU64,
    pub messages_sent: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub connections_opened: u64,
    pub auth_rejected: u64,
    pub forced_refreshes: u64,
    pub messages_sent: u64,
}

struct MailboxPool {
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<(Connection, Instant)>>,
}

/// Every mailbox's pool (one per context).
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<Key, Arc<MailboxPool>>>,
    stats: Stats,
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pools")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Is this a refusal of the token itself, which a fresh token may cure?
/// (Not SMTP AUTH switched off for the mailbox or tenant.)
pub fn is_token_rejection(e: &crate::Error) -> bool {
    e.kind == ErrorKind::AuthRejected
        && !e
            .server_reply
            .as_deref()
            .is_some_and(|r| r.contains("5.7.139") || r.contains("5.7.30"))
}

impl Pools {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            connections_opened: s.connections_opened.load(Ordering::Relaxed),
            auth_rejected: s.auth_rejected.load(Ordering::Relaxed),
            forced_refreshes: s.forced_refreshes.load(Ordering::Relaxed),
            messages_sent: s.messages_sent.load(Ordering::Relaxed),
        }
    }

    fn pool(&self, key: Key, max: u32) -> Arc<MailboxPool> {
        self.pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| {
                Arc::new(MailboxPool {
                    permits: Arc::new(Semaphore::new(max.max(1) as usize)),
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Drops every idle connection (their sockets close); sends running
    /// now keep theirs until they finish.
    pub fn close(&self) {
        let pools: Vec<_> = self
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, p)| p)
            .collect();
        for p in pools {
            p.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Sends `msg` as `mailbox` through `ep`, with tokens from `token`
    /// (`true`: force a refresh). A rejected token gets one forced refresh
    /// and one retry; a reused connection that turns out dead before DATA
    /// gets one retry on a new connection.
    pub async fn send<F>(
        &self,
        ep: &Endpoint,
        max_connections: u32,
        mailbox: &str,
        msg: &Composed,
        token: F,
    ) -> Result<Sent>
    where
        F: AsyncFn(bool) -> Result<Secret>,
    {
        let key = Key {
            mailbox: mailbox.to_ascii_lowercase(),
            host: crate::config::hosts::normalize(&ep.server.host),
            port: ep.server.port,
            security: match ep.server.security {
                Security::Tls => "tls",
                Security::StartTls => "starttls",
                Security::None => "none",
            },
        };
        let pool = self.pool(key, max_connections);
        let _permit = pool
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| crate::Error::internal("the SMTP pool is closed"))?;
        let mut tok = token(false).await?;
        let mut refreshed = false;
        let mut stale_retry = false;
        loop {
            let (mut conn, reused) = match self.take_idle(&pool) {
                Some(c) => (c, true),
                None => (self.open(ep).await?, false),
            };
            if !conn.is_authenticated_with(mailbox, &tok) {
                if conn.is_authenticated() {
                    // Logged in with an older token: a new session.
                    conn.close().await;
                    conn = self.open(ep).await?;
                }
                if let Err(e) = conn.authenticate(mailbox, &tok).await {
                    if is_token_rejection(&e) {
                        self.stats.auth_rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.close().await;
                    if is_token_rejection(&e) && !refreshed {
                        refreshed = true;
                        self.stats.forced_refreshes.fetch_add(1, Ordering::Relaxed);
                        crate::log::info!(
                            "the SMTP server rejected the token for {mailbox}; refreshing once and retrying"
                        );
                        tok = token(true).await?;
                        continue;
                    }
                    return Err(e);
                }
            }
            match conn.send(msg, mailbox).await {
                Ok(sent) => {
                    self.stats.messages_sent.fetch_add(1, Ordering::Relaxed);
                    self.put_back(&pool, conn);
                    return Ok(sent);
                }
                Err(e) => {
                    let dead = conn.is_broken();
                    let retry = reused && dead && !conn.data_started() && !stale_retry;
                    if dead {
                        drop(conn);
                    } else {
                        self.put_back(&pool, conn);
                    }
                    if retry {
                        stale_retry = true;
                        crate::log::debug!("a reused SMTP connection was dead; opening a new one");
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn open(&self, ep: &Endpoint) -> Result<Connection> {
        let c = Connection::open(ep).await?;
        self.stats
            .connections_opened
            .fetch_add(1, Ordering::Relaxed);
        Ok(c)
    }

    fn take_idle(&self, pool: &MailboxPool) -> Option<Connection> {
        let mut idle = pool.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((c, since)) = idle.pop() {
            if !c.is_broken() && since.elapsed() < IDLE_MAX {
                return Some(c);
            }
        }
        None
    }

    fn put_back(&self, pool: &MailboxPool, conn: Connection) {
        if !conn.is_broken() {
            pool.idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((conn, Instant::now()));
        }
    }
}
