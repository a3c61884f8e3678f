//! A UIDVALIDITY change for real against Dovecot (the folder's
//! dovecot-uidlist rewritten with a new UIDVALIDITY and new UIDs, as a
//! re-created folder has): acknowledged messages are recognised by
//! Message-ID and size and do not come back, a change still pending for one
//! of them is applied to its new UID, unacknowledged messages and the
//! acknowledged one without a Message-ID are delivered again.

mod mailbox_support;
mod support;

use std::collections::BTreeSet;

use mailbox_support::open::{context, request, store};
use mailbox_support::{stack, unique_user};
use mailoauth::mailbox::handle::Mailbox;
use mailoauth::mailbox::state;
use mailoauth::protocol::Protocol;
use serde_json::{Value, json};

fn validity(id: &str) -> u32 {
    id.split(':')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_uidvalidity_change_keeps_acknowledged_messages_acknowledged() {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbr-resync");
    stack.seed(&user, &["--count", "6", "--size", "3000"]);
    // A message without a Message-ID, and two identical copies of one
    // (same Message-ID, same size) of which only one is acknowledged.
    let no_id = b"From: nobody@fabrikam.test\r\nTo: x@contoso.test\r\nSubject: no id\r\n\r\nNo Message-ID.\r\n";
    stack.put_message(&user, None, "noid", no_id);
    let twin = b"From: a@fabrikam.test\r\nSubject: twin\r\nMessage-ID: <twin@fabrikam.test>\r\n\r\nTwice.\r\n";
    stack.put_message(&user, None, "twin1", twin);
    stack.put_message(&user, None, "twin2", twin);

    let ctx = context(&stack, dir.path(), &user, json!({}));
    let req = request(&stack, &user, "imap", "tls", json!({}));
    let mb = Mailbox::open(&ctx, &req).unwrap();
    let list = mb.poll(100).unwrap();
    assert_eq!(list.len(), 9, "{list:?}");
    let v1 = validity(&list[0].id);
    let no_id_summary = list.iter().find(|s| s.subject == "no id").unwrap();
    assert!(no_id_summary.message_id.is_empty());
    let twins: Vec<_> = list.iter().filter(|s| s.subject == "twin").collect();
    assert_eq!(twins.len(), 2);
    let seeded: Vec<_> = list
        .iter()
        .filter(|s| s.subject != "twin" && s.subject != "no id")
        .collect();
    assert_eq!(seeded.len(), 6);

    // Acknowledged: seeded 0 (keep), 1 (seen), 2 (keep, its \Seen left
    // pending below as if the connection had dropped), one twin, and the
    // message without a Message-ID. Not acknowledged: seeded 3..6, the
    // other twin.
    mb.ack(&seeded[0].id, "keep").unwrap();
    mb.ack(&seeded[1].id, "seen").unwrap();
    mb.ack(&seeded[2].id, "keep").unwrap();
    mb.ack(&twins[0].id, "keep").unwrap();
    mb.ack(&no_id_summary.id, "keep").unwrap();
    mb.close();

    // The \Seen of seeded[2] was acknowledged but never reached the server.
    let store = store(dir.path());
    let key = state::key(&user, Protocol::Imap, "INBOX");
    let mut raw: Value = store.load_raw(&key).unwrap().unwrap();
    assert_eq!(
        raw["fingerprints"].as_object().map(|m| m.len()),
        Some(4),
        "acknowledged messages with a Message-ID have fingerprints: {raw}"
    );
    raw["pending"] = json!({ seeded[2].id.clone(): {"action": "seen"} });
    store.save_raw(&key, &raw).unwrap();

    let (old, new) = stack.change_uid_validity(&user, None);
    assert_eq!(old, v1);

    let mb = Mailbox::open(&ctx, &req).unwrap();
    let again = mb.poll(100).unwrap();
    assert!(again.iter().all(|s| validity(&s.id) == new), "{again:?}");
    let got: BTreeSet<(String, String)> = again
        .iter()
        .map(|s| (s.subject.clone(), s.message_id.clone()))
        .collect();
    let mut want: BTreeSet<(String, String)> = seeded[3..]
        .iter()
        .map(|s| (s.subject.clone(), s.message_id.clone()))
        .collect();
    want.insert(("no id".into(), String::new()));
    want.insert(("twin".into(), "<twin@fabrikam.test>".into()));
    assert_eq!(got, want);
    assert_eq!(again.len(), 5, "one twin only: {again:?}");

    // The pending \Seen went to the message's new UID; seeded[1]'s \Seen
    // was done before the change.
    let mid = seeded[2].message_id.trim_matches(['<', '>']).to_string();
    let seen_of = |mid: &str| {
        let dir = stack.maildir(&user, None);
        for sub in ["cur", "new"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap().flatten() {
                let data = std::fs::read(e.path()).unwrap();
                if String::from_utf8_lossy(&data).contains(mid) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    return name.rsplit(":2,").next().unwrap_or("").contains('S')
                        && name.contains(":2,");
                }
            }
        }
        panic!("{mid} is not in the maildir");
    };
    assert!(
        seen_of(&mid),
        "the pending \\Seen was applied after the change"
    );
    assert!(seen_of(seeded[1].message_id.trim_matches(['<', '>'])));
    assert!(!seen_of(seeded[0].message_id.trim_matches(['<', '>'])));
    let raw: Value = store.load_raw(&key).unwrap().unwrap();
    assert_eq!(raw["uid_validity"], json!(new));
    assert!(raw.get("pending").is_none(), "confirmed: {raw}");

    // Bytes are those stored; acknowledging the rest empties the poll.
    let stored: BTreeSet<Vec<u8>> = stack.stored_messages(&user, None).into_iter().collect();
    for s in &again {
        assert!(stored.contains(&mb.fetch(&s.id).unwrap()));
        mb.ack(&s.id, "keep").unwrap();
    }
    assert!(mb.poll(100).unwrap().is_empty());
    mb.close();
    let mb = Mailbox::open(&ctx, &req).unwrap();
    assert!(mb.poll(100).unwrap().is_empty());
    mb.close();
}

#[test]
fn start_new_records_fingerprints_for_what_is_there() {
    let Some(stack) = stack() else { return };
    let dir = tempfile::tempdir().unwrap();
    let user = unique_user("mbr-startnew");
    stack.seed(&user, &["--count", "4", "--size", "2000"]);
    let ctx = context(&stack, dir.path(), &user, json!({}));
    let req = request(&stack, &user, "imap", "starttls", json!({"start": "new"}));
    let mb = Mailbox::open(&ctx, &req).unwrap();
    assert!(mb.poll(100).unwrap().is_empty());
    mb.close();
    stack.seed(&user, &["--count", "2", "--size", "2000", "--seed", "77"]);
    stack.change_uid_validity(&user, None);
    let mb = Mailbox::open(&ctx, &req).unwrap();
    let list = mb.poll(100).unwrap();
    // Only the two that came after the first open.
    assert_eq!(list.len(), 2, "{list:?}");
    mb.close();
}
