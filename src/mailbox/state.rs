//! The poll state of one mailbox folder: which messages the host has
//! acknowledged, and which acknowledged changes (delete, move, \Seen) are
//! not yet confirmed by the server. It lives in the token cache's store
//! (same protection, atomic writes) under `poll:<account>/<protocol>/<folder>`
//! through [`GrantStore::save_raw`] / [`GrantStore::load_raw`].
//!
//! Ids are `UIDVALIDITY:UID` for IMAP and the UIDL for POP3. IMAP UIDs are
//! kept as ranges (a folder of 100,000 acknowledged messages costs a few
//! bytes when they are contiguous); POP3 UIDLs as a set, pruned to what the
//! server still lists.
//!
//! The record is written *before* the server is changed: an acknowledged
//! message is never handed out again, and a change lost with a dropped
//! connection stays pending and is retried (at least once, idempotent on
//! the server: \Seen and \Deleted are flags, a move of a message already
//! gone finds nothing).
//!
//! UIDVALIDITY changes (IMAP): for every acknowledged message still in the
//! folder the record keeps its [`Fingerprint`] (RFC822.SIZE and
//! Message-ID). When the server reports a new UIDVALIDITY, [`PollState::resync`]
//! matches the messages of the new UIDVALIDITY against these fingerprints,
//! one to one: a match counts as acknowledged (and a change still pending
//! for the old message is moved to the new one), everything else is
//! delivered again. Messages without a Message-ID have no fingerprint and
//! are always delivered again. The field is optional: records written
//! before it existed load unchanged (they just have no fingerprints).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::cache::{GrantStore, POLL_PREFIX};
use crate::error::{Error, ErrorKind, Result};
use crate::i18n::Text;
use crate::protocol::Protocol;

/// The record's format version.
pub const VERSION: u32 = 1;

/// The store key of a folder's poll state.
pub fn key(account: &str, protocol: Protocol, folder: &str) -> String {
    format!("{POLL_PREFIX}{account}/{}/{folder}", protocol.as_str())
}

/// What the host asked for when acknowledging a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "folder")]
pub enum Action {
    /// Remember as processed, change nothing on the server.
    Keep,
    /// Set \Seen (IMAP; `keep` on POP3).
    Seen,
    /// Delete (IMAP: \Deleted and expunge; POP3: DELE, committed at QUIT).
    Delete,
    /// Move to a folder (IMAP only).
    Move(String),
}

impl Action {
    /// Parses the ABI's action text (`keep`, `seen`, `delete`,
    /// `move:<folder>`) for a protocol.
    pub fn parse(text: &str, protocol: Protocol) -> Result<Action> {
        let bad =
            |en: String, de: String| Error::new(ErrorKind::InvalidArgument, Text::new(en, de));
        let action = match text {
            "keep" => Action::Keep,
            "seen" => Action::Seen,
            "delete" => Action::Delete,
            _ => match text.strip_prefix("move:") {
                Some(folder)
                    if !folder.is_empty()
                        && folder.len() <= 1024
                        && !folder.contains(['\r', '\n', '\0']) =>
                {
                    Action::Move(folder.to_string())
                }
                _ => {
                    return Err(bad(
                        format!("'{text}' is not an action (keep, seen, delete, move:<folder>)"),
                        format!("'{text}' ist keine Aktion (keep, seen, delete, move:<Ordner>)"),
                    ));
                }
            },
        };
        match (protocol, action) {
            (Protocol::Pop3, Action::Seen) => Ok(Action::Keep),
            (Protocol::Pop3, Action::Move(_)) => Err(bad(
                "POP3 has no folders: move is not possible".into(),
                "POP3 kennt keine Ordner: Verschieben ist nicht möglich".into(),
            )),
            (_, a) => Ok(a),
        }
    }

    /// True when the server must be changed.
    pub fn changes_server(&self) -> bool {
        !matches!(self, Action::Keep)
    }
}

/// The longest Message-ID kept in a fingerprint; a longer one counts as
/// none (the message is delivered again after a UIDVALIDITY change).
pub const MAX_MESSAGE_ID: usize = 998;

/// What recognises an acknowledged message after a UIDVALIDITY change:
/// its size (RFC822.SIZE) and its Message-ID (with angle brackets).
/// Stored as `[size, "<message-id>"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(pub u64, pub String);

impl Fingerprint {
    /// None when the message has no (usable) Message-ID.
    pub fn new(size: u64, message_id: &str) -> Option<Fingerprint> {
        let m = message_id.trim();
        (!m.is_empty() && m.len() <= MAX_MESSAGE_ID && !m.contains(['\r', '\n', '\0']))
            .then(|| Fingerprint(size, m.to_string()))
    }
}

/// What a re-synchronisation after a UIDVALIDITY change did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resync {
    /// Messages of the new UIDVALIDITY recognised as acknowledged.
    pub matched: usize,
    /// Pending server changes moved to the recognised messages.
    pub pending_moved: usize,
    /// Acknowledged messages of the old UIDVALIDITY not found again (gone,
    /// changed, or without a fingerprint: their messages are delivered
    /// again if they are still there).
    pub unmatched: usize,
}

/// Inclusive UID ranges, sorted and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UidRanges(Vec<(u32, u32)>);

impl UidRanges {
    pub fn contains(&self, uid: u32) -> bool {
        let i = self.0.partition_point(|(_, end)| *end < uid);
        self.0.get(i).is_some_and(|(start, _)| *start <= uid)
    }

    pub fn insert(&mut self, uid: u32) {
        if self.contains(uid) {
            return;
        }
        let i = self.0.partition_point(|(_, end)| *end < uid);
        self.0.insert(i, (uid, uid));
        // Merge with the neighbours where they touch.
        if i + 1 < self.0.len() && self.0[i].1.checked_add(1) == Some(self.0[i + 1].0) {
            self.0[i].1 = self.0[i + 1].1;
            self.0.remove(i + 1);
        }
        if i > 0 && self.0[i - 1].1.checked_add(1) == Some(self.0[i].0) {
            self.0[i - 1].1 = self.0[i].1;
            self.0.remove(i);
        }
    }

    /// The number of UIDs held.
    pub fn len(&self) -> u64 {
        self.0
            .iter()
            .map(|(a, b)| u64::from(*b) - u64::from(*a) + 1)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of ranges (what the record costs).
    pub fn ranges(&self) -> usize {
        self.0.len()
    }

    /// Checks a loaded value: sorted, disjoint, not touching.
    fn valid(&self) -> bool {
        self.0.iter().all(|(a, b)| a <= b)
            && self
                .0
                .windows(2)
                .all(|w| w[0].1.checked_add(1).is_some_and(|n| n < w[1].0))
    }
}

/// A folder's poll state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollState {
    pub version: u32,
    pub protocol: Protocol,
    pub folder: String,
    /// IMAP: the UIDVALIDITY that `uids` refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_validity: Option<u32>,
    /// IMAP: acknowledged UIDs.
    #[serde(default, skip_serializing_if = "UidRanges::is_empty")]
    pub uids: UidRanges,
    /// POP3: acknowledged UIDLs.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub uidls: BTreeSet<String>,
    /// IMAP: the fingerprints of acknowledged messages, by UID (for the
    /// re-synchronisation after a UIDVALIDITY change); pruned to the UIDs
    /// the folder still has.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fingerprints: BTreeMap<u32, Fingerprint>,
    /// Acknowledged changes the server has not confirmed yet, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, Action>,
    /// Set once the first open has happened (`start: new` applies only
    /// then).
    #[serde(default)]
    pub started: bool,
}

/// A parsed message id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Imap { uid_validity: u32, uid: u32 },
    Pop3(String),
}

impl Id {
    /// Parses an id as `poll` hands them out.
    pub fn parse(id: &str, protocol: Protocol) -> Result<Id> {
        let bad = || {
            Error::new(
                ErrorKind::InvalidArgument,
                Text::new(
                    format!("'{id}' is not a message id of this mailbox"),
                    format!("'{id}' ist keine Nachrichten-ID dieses Postfachs"),
                ),
            )
        };
        match protocol {
            Protocol::Imap => {
                let (v, u) = id.split_once(':').ok_or_else(bad)?;
                let num = |s: &str| {
                    (!s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| s.parse::<u32>().ok())
                        .flatten()
                        .filter(|n| *n > 0)
                };
                Ok(Id::Imap {
                    uid_validity: num(v).ok_or_else(bad)?,
                    uid: num(u).ok_or_else(bad)?,
                })
            }
            Protocol::Pop3 => {
                if id.is_empty() || id.len() > 70 || !id.bytes().all(|b| (0x21..=0x7e).contains(&b))
                {
                    return Err(bad());
                }
                Ok(Id::Pop3(id.to_string()))
            }
            Protocol::Smtp => Err(bad()),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Id::Imap { uid_validity, uid } => format!("{uid_validity}:{uid}"),
            Id::Pop3(u) => u.clone(),
        }
    }
}

impl PollState {
    pub fn new(protocol: Protocol, folder: &str) -> Self {
        Self {
            version: VERSION,
            protocol,
            folder: folder.to_string(),
            uid_validity: None,
            uids: UidRanges::default(),
            uidls: BTreeSet::new(),
            fingerprints: BTreeMap::new(),
            pending: BTreeMap::new(),
            started: false,
        }
    }

    /// Reads the state under `key`, or a fresh one. A record of a newer
    /// format, or one that does not fit, is `CACHE_VERSION` /
    /// `CACHE_CORRUPT` (never silently replaced: acknowledged messages
    /// would come back).
    pub fn load(store: &GrantStore, key: &str, protocol: Protocol, folder: &str) -> Result<Self> {
        let Some(state) = store.load_raw::<serde_json::Value>(key)? else {
            return Ok(Self::new(protocol, folder));
        };
        let version = state.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > u64::from(VERSION) {
            return Err(Error::new(
                ErrorKind::CacheVersion,
                Text::new(
                    format!(
                        "the poll state {key} was written by a newer library (format {version})"
                    ),
                    format!(
                        "der Abrufstand {key} wurde von einer neueren Bibliothek geschrieben (Format {version})"
                    ),
                ),
            ));
        }
        let corrupt = |why: &str| {
            Error::new(
                ErrorKind::CacheCorrupt,
                Text::new(
                    format!("the poll state {key} cannot be read: {why}"),
                    format!("der Abrufstand {key} ist nicht lesbar: {why}"),
                ),
            )
        };
        let state: PollState =
            serde_json::from_value(state).map_err(|e| corrupt(&e.to_string()))?;
        if state.protocol != protocol || state.folder != folder || !state.uids.valid() {
            return Err(corrupt("it belongs to another mailbox or is inconsistent"));
        }
        Ok(state)
    }

    /// Writes the state (atomically, with the store's protection).
    pub fn save(&self, store: &GrantStore, key: &str) -> Result<()> {
        store.save_raw(key, self)
    }

    /// True when the message was acknowledged.
    pub fn is_acked(&self, id: &Id) -> bool {
        match id {
            Id::Imap { uid_validity, uid } => {
                self.uid_validity == Some(*uid_validity) && self.uids.contains(*uid)
            }
            Id::Pop3(u) => self.uidls.contains(u),
        }
    }

    /// Records an acknowledgement (and the pending server change).
    pub fn ack(&mut self, id: &Id, action: Action) -> Result<()> {
        match id {
            Id::Imap { uid_validity, uid } => {
                match self.uid_validity {
                    None => self.uid_validity = Some(*uid_validity),
                    Some(v) if v == *uid_validity => {}
                    Some(_) => {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            Text::new(
                                format!(
                                    "the message {} is from an earlier state of the folder (UIDVALIDITY changed)",
                                    id.to_text()
                                ),
                                format!(
                                    "die Nachricht {} stammt aus einem früheren Stand des Ordners (UIDVALIDITY geändert)",
                                    id.to_text()
                                ),
                            ),
                        ));
                    }
                }
                self.uids.insert(*uid);
            }
            Id::Pop3(u) => {
                self.uidls.insert(u.clone());
            }
        }
        if action.changes_server() {
            self.pending.insert(id.to_text(), action);
        }
        Ok(())
    }

    /// The server confirmed the change for this id.
    /// A confirmed delete or move took the message out of the folder: its
    /// fingerprint is no longer needed.
    pub fn confirm(&mut self, id: &Id) {
        let done = self.pending.remove(&id.to_text());
        if let (Id::Imap { uid, .. }, Some(action)) = (id, done) {
            let left = match action {
                Action::Delete => true,
                Action::Move(to) => to != self.folder,
                Action::Keep | Action::Seen => false,
            };
            if left {
                self.fingerprints.remove(uid);
            }
        }
    }

    /// Records an acknowledgement with the message's fingerprint (IMAP;
    /// None: it has no Message-ID and is delivered again after a
    /// UIDVALIDITY change).
    pub fn ack_with(&mut self, id: &Id, action: Action, fp: Option<Fingerprint>) -> Result<()> {
        self.ack(id, action)?;
        if let (Id::Imap { uid, .. }, Some(fp)) = (id, fp) {
            self.fingerprints.insert(*uid, fp);
        }
        Ok(())
    }

    /// IMAP: keeps the fingerprints of these UIDs only (`present`: every
    /// UID the folder has now, any order); true when something was dropped.
    pub fn prune_fingerprints(&mut self, present: &[u32]) -> bool {
        let before = self.fingerprints.len();
        if before == 0 {
            return false;
        }
        let mut sorted = present.to_vec();
        sorted.sort_unstable();
        self.fingerprints
            .retain(|uid, _| sorted.binary_search(uid).is_ok());
        self.fingerprints.len() != before
    }

    /// A new UIDVALIDITY: the old UIDs mean nothing any more. The messages
    /// the folder has now (`present`: UID and fingerprint, any order) are
    /// matched one to one against the fingerprints of the acknowledged
    /// messages of the old UIDVALIDITY, lowest UID first: a match counts as
    /// acknowledged (its fingerprint kept, a change still pending for the
    /// old message now pending for the new one); every other message is
    /// delivered again. Nothing happens when the UIDVALIDITY is the same.
    pub fn resync(&mut self, uid_validity: u32, present: &[(u32, Option<Fingerprint>)]) -> Resync {
        let mut report = Resync::default();
        if self.uid_validity == Some(uid_validity) {
            return report;
        }
        let old = self.uid_validity;
        let mut known: HashMap<Fingerprint, VecDeque<Option<Action>>> = HashMap::new();
        let mut acked_without = self.uids.len();
        for (uid, fp) in std::mem::take(&mut self.fingerprints) {
            if !self.uids.contains(uid) {
                continue;
            }
            acked_without = acked_without.saturating_sub(1);
            let action = old.and_then(|v| self.pending.get(&format!("{v}:{uid}")).cloned());
            known.entry(fp).or_default().push_back(action);
        }
        self.uid_validity = Some(uid_validity);
        self.uids = UidRanges::default();
        // Every pending IMAP change names an old UID; the matched ones are
        // pending again below.
        self.pending.clear();
        let mut present: Vec<&(u32, Option<Fingerprint>)> = present.iter().collect();
        present.sort_by_key(|(uid, _)| *uid);
        for (uid, fp) in present {
            let Some(fp) = fp else { continue };
            let Some(action) = known.get_mut(fp).and_then(VecDeque::pop_front) else {
                continue;
            };
            self.uids.insert(*uid);
            self.fingerprints.insert(*uid, fp.clone());
            report.matched += 1;
            if let Some(a) = action {
                self.pending.insert(format!("{uid_validity}:{uid}"), a);
                report.pending_moved += 1;
            }
        }
        report.unmatched = known.values().map(VecDeque::len).sum::<usize>()
            + usize::try_from(acked_without).unwrap_or(usize::MAX);
        report
    }

    /// POP3: forgets acknowledged UIDLs the server no longer lists (and
    /// their pending deletions: done).
    pub fn prune_uidls<'a>(&mut self, listed: impl IntoIterator<Item = &'a str>) {
        let listed: BTreeSet<&str> = listed.into_iter().collect();
        self.uidls.retain(|u| listed.contains(u.as_str()));
        if self.protocol == Protocol::Pop3 {
            self.pending.retain(|id, _| listed.contains(id.as_str()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CacheConfig, Protection};
    use proptest::prelude::*;

    fn store(dir: &std::path::Path) -> GrantStore {
        GrantStore::for_folder(
            &CacheConfig {
                path: Some(dir.to_path_buf()),
                protection: Protection::None,
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn key_and_actions() {
        assert_eq!(key("a@x", Protocol::Imap, "INBOX"), "poll:a@x/imap/INBOX");
        assert_eq!(Action::parse("seen", Protocol::Pop3).unwrap(), Action::Keep);
        assert_eq!(
            Action::parse("move:Deleted Items", Protocol::Imap).unwrap(),
            Action::Move("Deleted Items".into())
        );
        assert!(Action::parse("move:x", Protocol::Pop3).is_err());
        assert!(Action::parse("move:", Protocol::Imap).is_err());
        assert!(Action::parse("move:a\r\nb", Protocol::Imap).is_err());
        assert!(Action::parse("Delete", Protocol::Imap).is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(
            Id::parse("7:42", Protocol::Imap).unwrap(),
            Id::Imap {
                uid_validity: 7,
                uid: 42
            }
        );
        for bad in [
            "7",
            "7:",
            ":1",
            "0:1",
            "1:0",
            "a:1",
            "1:99999999999",
            "1:2:3",
        ] {
            assert!(Id::parse(bad, Protocol::Imap).is_err(), "{bad}");
        }
        assert!(Id::parse("000000016b0b9469", Protocol::Pop3).is_ok());
        assert!(Id::parse("a b", Protocol::Pop3).is_err());
    }

    #[test]
    fn round_trip_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let st = store(dir.path());
        let k = key("a@x", Protocol::Imap, "INBOX");
        let mut s = PollState::load(&st, &k, Protocol::Imap, "INBOX").unwrap();
        assert!(!s.started);
        s.started = true;
        for u in [1, 2, 3, 7] {
            s.ack(
                &Id::Imap {
                    uid_validity: 9,
                    uid: u,
                },
                Action::Keep,
            )
            .unwrap();
        }
        s.ack(
            &Id::Imap {
                uid_validity: 9,
                uid: 8,
            },
            Action::Delete,
        )
        .unwrap();
        assert!(
            s.ack(
                &Id::Imap {
                    uid_validity: 10,
                    uid: 1
                },
                Action::Keep
            )
            .is_err()
        );
        s.save(&st, &k).unwrap();
        let back = PollState::load(&st, &k, Protocol::Imap, "INBOX").unwrap();
        assert_eq!(back, s);
        assert_eq!(back.uids.ranges(), 2);
        assert!(back.is_acked(&Id::Imap {
            uid_validity: 9,
            uid: 8
        }));
        assert!(!back.is_acked(&Id::Imap {
            uid_validity: 9,
            uid: 4
        }));
        assert!(!back.is_acked(&Id::Imap {
            uid_validity: 10,
            uid: 1
        }));
        assert_eq!(back.pending.get("9:8"), Some(&Action::Delete));
        // Another folder's record is refused, not reused.
        assert_eq!(
            PollState::load(&st, &k, Protocol::Imap, "Archive")
                .unwrap_err()
                .kind,
            ErrorKind::CacheCorrupt
        );
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let st = store(dir.path());
        let k = key("a@x", Protocol::Pop3, "INBOX");
        st.save_raw(&k, &serde_json::json!({"version": 99}))
            .unwrap();
        assert_eq!(
            PollState::load(&st, &k, Protocol::Pop3, "INBOX")
                .unwrap_err()
                .kind,
            ErrorKind::CacheVersion
        );
    }

    #[test]
    fn pop3_prune_and_confirm() {
        let mut s = PollState::new(Protocol::Pop3, "INBOX");
        let a = Id::Pop3("a".into());
        let b = Id::Pop3("b".into());
        s.ack(&a, Action::Delete).unwrap();
        s.ack(&b, Action::Keep).unwrap();
        assert_eq!(s.pending.len(), 1);
        s.prune_uidls(["b"]);
        assert!(!s.is_acked(&a));
        assert!(s.is_acked(&b));
        assert!(s.pending.is_empty());
        s.ack(&b, Action::Delete).unwrap();
        s.confirm(&b);
        assert!(s.pending.is_empty());
    }

    fn imap(v: u32, uid: u32) -> Id {
        Id::Imap {
            uid_validity: v,
            uid,
        }
    }

    fn fp(size: u64, mid: &str) -> Option<Fingerprint> {
        Fingerprint::new(size, mid)
    }

    #[test]
    fn resync_matches_acknowledged_messages_one_to_one() {
        let mut s = PollState::new(Protocol::Imap, "INBOX");
        // Old UIDVALIDITY 5: 1..=6 acknowledged in different ways.
        s.ack_with(&imap(5, 1), Action::Keep, fp(100, "<a@x>"))
            .unwrap();
        s.ack_with(&imap(5, 2), Action::Seen, fp(200, "<b@x>"))
            .unwrap();
        s.ack_with(&imap(5, 3), Action::Keep, None).unwrap(); // no Message-ID
        s.ack_with(&imap(5, 4), Action::Keep, fp(300, "<dup@x>"))
            .unwrap();
        s.ack_with(
            &imap(5, 5),
            Action::Move("Archive".into()),
            fp(400, "<m@x>"),
        )
        .unwrap();
        s.ack_with(&imap(5, 6), Action::Keep, fp(500, "<gone@x>"))
            .unwrap();
        s.confirm(&imap(5, 2)); // \Seen done; the move is still pending
        assert_eq!(s.pending.len(), 1);
        // New UIDVALIDITY 9 with other UIDs; <dup@x> twice (one was
        // acknowledged), <a@x> with another size (another message), a new
        // message, and the message without a Message-ID.
        let present = vec![
            (30, fp(300, "<dup@x>")),
            (10, fp(100, "<a@x>")),
            (11, fp(101, "<a@x>")),
            (20, fp(200, "<b@x>")),
            (31, fp(300, "<dup@x>")),
            (40, None),
            (50, fp(400, "<m@x>")),
            (60, fp(999, "<new@x>")),
        ];
        let r = s.resync(9, &present);
        assert_eq!(
            r,
            Resync {
                matched: 4,
                pending_moved: 1,
                unmatched: 2
            }
        );
        assert_eq!(s.uid_validity, Some(9));
        for uid in [10, 20, 30, 50] {
            assert!(s.is_acked(&imap(9, uid)), "{uid}");
        }
        for uid in [11, 31, 40, 60] {
            assert!(!s.is_acked(&imap(9, uid)), "{uid}");
        }
        assert!(!s.is_acked(&imap(5, 1)));
        assert_eq!(
            s.pending.iter().collect::<Vec<_>>(),
            vec![(&"9:50".to_string(), &Action::Move("Archive".into()))]
        );
        assert_eq!(s.fingerprints.len(), 4);
        // The same UIDVALIDITY again changes nothing.
        let before = s.clone();
        assert_eq!(s.resync(9, &[]), Resync::default());
        assert_eq!(s, before);
        // A fresh state (no UIDVALIDITY yet) learns it and matches nothing.
        let mut f = PollState::new(Protocol::Imap, "INBOX");
        assert_eq!(f.resync(3, &present).matched, 0);
        assert_eq!(f.uid_validity, Some(3));
    }

    #[test]
    fn fingerprints_are_pruned_and_bounded() {
        let mut s = PollState::new(Protocol::Imap, "INBOX");
        for u in 1..=4 {
            s.ack_with(&imap(1, u), Action::Keep, fp(10, &format!("<{u}@x>")))
                .unwrap();
        }
        // A confirmed delete or move (elsewhere) drops the fingerprint.
        s.ack_with(&imap(1, 5), Action::Delete, fp(10, "<5@x>"))
            .unwrap();
        s.ack_with(&imap(1, 6), Action::Move("INBOX".into()), fp(10, "<6@x>"))
            .unwrap();
        s.ack_with(&imap(1, 7), Action::Move("Archive".into()), fp(10, "<7@x>"))
            .unwrap();
        for u in [5, 6, 7] {
            s.confirm(&imap(1, u));
        }
        assert_eq!(
            s.fingerprints.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 6]
        );
        assert!(s.prune_fingerprints(&[4, 2, 7]));
        assert_eq!(
            s.fingerprints.keys().copied().collect::<Vec<_>>(),
            vec![2, 4]
        );
        assert!(!s.prune_fingerprints(&[2, 4]));
        assert!(fp(1, "").is_none());
        assert!(fp(1, "  ").is_none());
        assert!(fp(1, &format!("<{}@x>", "a".repeat(1000))).is_none());
        assert!(fp(1, "<a\r\nb@x>").is_none());
    }

    #[test]
    fn records_without_fingerprints_still_load() {
        // Written before fingerprints existed (format 1 as it was).
        let dir = tempfile::tempdir().unwrap();
        let st = store(dir.path());
        let k = key("a@x", Protocol::Imap, "INBOX");
        st.save_raw(
            &k,
            &serde_json::json!({"version": 1, "protocol": "imap", "folder": "INBOX",
                "uid_validity": 7, "uids": [[1, 3]], "pending": {"7:2": {"action": "seen"}},
                "started": true}),
        )
        .unwrap();
        let mut s = PollState::load(&st, &k, Protocol::Imap, "INBOX").unwrap();
        assert!(s.is_acked(&imap(7, 2)));
        assert!(s.fingerprints.is_empty());
        // Without fingerprints nothing is recognised: delivered again.
        let r = s.resync(8, &[(1, fp(5, "<a@x>"))]);
        assert_eq!((r.matched, r.unmatched), (0, 3));
        s.ack_with(&imap(8, 1), Action::Keep, fp(5, "<a@x>"))
            .unwrap();
        s.save(&st, &k).unwrap();
        let back = PollState::load(&st, &k, Protocol::Imap, "INBOX").unwrap();
        assert_eq!(back, s);
        let raw: serde_json::Value = st.load_raw(&k).unwrap().unwrap();
        assert_eq!(raw["fingerprints"], serde_json::json!({"1": [5, "<a@x>"]}));
    }

    proptest! {
        #[test]
        fn ranges_match_a_set(uids in proptest::collection::vec(0u32..200, 0..300)) {
            let mut r = UidRanges::default();
            let mut set = BTreeSet::new();
            for u in &uids {
                r.insert(*u);
                set.insert(*u);
                prop_assert!(r.valid());
            }
            for u in 0..210 {
                prop_assert_eq!(r.contains(u), set.contains(&u));
            }
            prop_assert_eq!(r.len(), set.len() as u64);
        }
    }
}
