//! The simulated provider's mailboxes: one INBOX per user, shared by the IMAP server (which reads
//! them) and the provider behaviour (which delivers into them). In memory, thread-safe, cheap to
//! clone (every clone is the same store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset, Local};
use tokio::sync::Notify;

/// One message in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub uid: u32,
    pub raw: Arc<Vec<u8>>,
    /// When it arrived (IMAP `INTERNALDATE`).
    pub internal_date: DateTime<FixedOffset>,
    /// The `\Seen` flag.
    pub seen: bool,
}

/// A mailbox as it is at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSnapshot {
    pub uid_validity: u32,
    pub uid_next: u32,
    /// Oldest first (ascending UID): message sequence number n is `messages[n - 1]`.
    pub messages: Vec<StoredMessage>,
}

#[derive(Debug)]
struct Mailbox {
    password: String,
    uid_validity: u32,
    uid_next: u32,
    messages: Vec<StoredMessage>,
}

#[derive(Debug, Default)]
struct Inner {
    boxes: HashMap<String, Mailbox>,
}

/// The provider's users and their INBOXes. User names are addresses, compared case-insensitively.
#[derive(Debug, Clone, Default)]
pub struct MailStore {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
}

fn key(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}

impl MailStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the mailbox of `address` (or changes its password, keeping its messages).
    pub fn add_user(&self, address: &str, password: &str) {
        let mut inner = self.lock();
        let next_validity = 1 + inner.boxes.len() as u32;
        inner
            .boxes
            .entry(key(address))
            .and_modify(|m| m.password = password.to_owned())
            .or_insert_with(|| Mailbox {
                password: password.to_owned(),
                // A recognisable, per-mailbox value (real servers use a timestamp).
                uid_validity: 1_700_000_000 + next_validity,
                uid_next: 1,
                messages: Vec::new(),
            });
    }

    /// Whether `address` has a mailbox here.
    pub fn has_user(&self, address: &str) -> bool {
        self.lock().boxes.contains_key(&key(address))
    }

    /// Whether `user` / `password` may log in.
    pub fn check_login(&self, user: &str, password: &str) -> bool {
        self.lock()
            .boxes
            .get(&key(user))
            .is_some_and(|m| m.password == password)
    }

    /// Puts a message in the INBOX of `address`; its UID, or `None` when there is no such mailbox.
    pub fn deliver(&self, address: &str, raw: Vec<u8>) -> Option<u32> {
        let uid = {
            let mut inner = self.lock();
            let mailbox = inner.boxes.get_mut(&key(address))?;
            let uid = mailbox.uid_next;
            mailbox.uid_next += 1;
            mailbox.messages.push(StoredMessage {
                uid,
                raw: Arc::new(raw),
                internal_date: Local::now().fixed_offset(),
                seen: false,
            });
            uid
        };
        self.changed.notify_waiters();
        Some(uid)
    }

    /// The INBOX of `address` as it is now.
    pub fn snapshot(&self, address: &str) -> Option<MailboxSnapshot> {
        self.lock()
            .boxes
            .get(&key(address))
            .map(|m| MailboxSnapshot {
                uid_validity: m.uid_validity,
                uid_next: m.uid_next,
                messages: m.messages.clone(),
            })
    }

    /// Sets or clears `\Seen` on one message; false when there is no such message.
    pub fn set_seen(&self, address: &str, uid: u32, seen: bool) -> bool {
        let mut inner = self.lock();
        let Some(mailbox) = inner.boxes.get_mut(&key(address)) else {
            return false;
        };
        match mailbox.messages.iter_mut().find(|m| m.uid == uid) {
            Some(m) => {
                m.seen = seen;
                true
            }
            None => false,
        }
    }

    /// The raw messages in the INBOX of `address`, oldest first (empty when there is none).
    pub fn messages(&self, address: &str) -> Vec<Vec<u8>> {
        self.snapshot(address)
            .map(|s| s.messages.iter().map(|m| m.raw.to_vec()).collect())
            .unwrap_or_default()
    }

    /// Waits until the INBOX of `address` holds at least `count` messages, or `timeout` passes;
    /// returns how many it holds.
    pub async fn wait_for(
        &self,
        address: &str,
        count: usize,
        timeout: std::time::Duration,
    ) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            let now = self.snapshot(address).map_or(0, |s| s.messages.len());
            if now >= count {
                return now;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.snapshot(address).map_or(0, |s| s.messages.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_grow_per_mailbox_and_unknown_mailboxes_refuse_delivery() {
        let store = MailStore::new();
        store.add_user("Protocollo@pec.sandbox.test", "p");
        store.add_user("altro@pec.sandbox.test", "q");
        assert_eq!(
            store.deliver("protocollo@PEC.sandbox.test", b"a".to_vec()),
            Some(1)
        );
        assert_eq!(
            store.deliver("protocollo@pec.sandbox.test", b"b".to_vec()),
            Some(2)
        );
        assert_eq!(
            store.deliver("altro@pec.sandbox.test", b"c".to_vec()),
            Some(1)
        );
        assert_eq!(
            store.deliver("nessuno@pec.sandbox.test", b"d".to_vec()),
            None
        );
        let snap = store.snapshot("protocollo@pec.sandbox.test").unwrap();
        assert_eq!(snap.uid_next, 3);
        assert_ne!(
            snap.uid_validity,
            store
                .snapshot("altro@pec.sandbox.test")
                .unwrap()
                .uid_validity
        );
        assert!(store.check_login("PROTOCOLLO@pec.sandbox.test", "p"));
        assert!(!store.check_login("protocollo@pec.sandbox.test", "q"));
        assert!(store.set_seen("protocollo@pec.sandbox.test", 2, true));
        assert!(!store.set_seen("protocollo@pec.sandbox.test", 9, true));
        let seen: Vec<bool> = store
            .snapshot("protocollo@pec.sandbox.test")
            .unwrap()
            .messages
            .iter()
            .map(|m| m.seen)
            .collect();
        assert_eq!(seen, vec![false, true]);
    }

    #[tokio::test]
    async fn wait_for_wakes_on_delivery() {
        let store = MailStore::new();
        store.add_user("a@pec.sandbox.test", "p");
        let other = store.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            other.deliver("a@pec.sandbox.test", b"x".to_vec());
        });
        let n = store
            .wait_for("a@pec.sandbox.test", 1, std::time::Duration::from_secs(5))
            .await;
        assert_eq!(n, 1);
    }
}
