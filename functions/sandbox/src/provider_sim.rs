//! A PEC provider in a box: the provider behaviour ([`PecProvider`]) behind a real SMTP
//! submission server ([`SmtpSimulator`]) and a real IMAP server ([`ImapSimulator`]) over the same
//! mailboxes ([`MailStore`]), on loopback, in-process, with TLS by the sandbox test CA
//! ([`crate::smtp::SANDBOX_CA_PEM`]).
//!
//! A message submitted over SMTP by an authenticated user goes through [`PecProvider::submit`]:
//! the accettazione (or avviso di non accettazione) and the buste di trasporto are in their
//! mailboxes before the client hears `250`; the delivery receipts follow at once, or after
//! [`crate::provider::Quirks::receipt_delay`]. Ordinary mail from outside
//! ([`PecProviderSimulator::receive_external`]) becomes a busta di anomalia. Every message the
//! provider issues is also kept ([`PecProviderSimulator::issued`]) for tests to inspect.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use pec::Kind;

use crate::imap::ImapSimulator;
use crate::mailstore::MailStore;
use crate::provider::{Delivery, PecProvider, Quirks, Submission as ProviderSubmission};
use crate::smtp::{SmtpSimulator, Submission};

/// Largest message the SMTP server takes (the provider's own size × recipients check applies
/// on top, with an avviso di non accettazione).
pub const SMTP_MAX_SIZE: usize = 100 * 1024 * 1024;

/// One message the provider put (or will put, when delayed) in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub mailbox: String,
    pub kind: Kind,
    pub raw: Arc<Vec<u8>>,
}

/// A running PEC provider: SMTP submission and IMAP access over its mailboxes.
pub struct PecProviderSimulator {
    store: MailStore,
    provider: Arc<Mutex<PecProvider>>,
    issued: Arc<Mutex<Vec<Issued>>>,
    smtp: SmtpSimulator,
    imap: ImapSimulator,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Puts each delivery in its mailbox (now, or after its delay) and keeps it in `issued`.
fn deliver_all(store: &MailStore, issued: &Mutex<Vec<Issued>>, deliveries: Vec<Delivery>) {
    for d in deliveries {
        let raw = Arc::new(d.raw);
        lock(issued).push(Issued {
            mailbox: d.mailbox.clone(),
            kind: d.kind,
            raw: raw.clone(),
        });
        if d.delay.is_zero() {
            store.deliver(&d.mailbox, raw.to_vec());
        } else {
            let store = store.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d.delay).await;
                store.deliver(&d.mailbox, raw.to_vec());
            });
        }
    }
}

impl PecProviderSimulator {
    /// Starts the SMTP and IMAP servers on 127.0.0.1 (free ports) for `provider`. Mailboxes
    /// are added with [`Self::add_user`]; a hosted address without one is unknown to it.
    pub async fn start(provider: PecProvider) -> Result<PecProviderSimulator, String> {
        let store = MailStore::new();
        let provider = Arc::new(Mutex::new(provider));
        let issued = Arc::new(Mutex::new(Vec::new()));
        let logins = {
            let store = store.clone();
            Arc::new(move |user: &str, password: &str| store.check_login(user, password))
        };
        let on_submission = {
            let (store, provider, issued) = (store.clone(), provider.clone(), issued.clone());
            Arc::new(move |s: Submission| {
                let deliveries = lock(&provider).submit(&ProviderSubmission {
                    authenticated_user: &s.authenticated_user,
                    mail_from: &s.mail_from,
                    recipients: &s.recipients,
                    raw: &s.raw,
                });
                deliver_all(&store, &issued, deliveries);
            })
        };
        let smtp = SmtpSimulator::start_with(logins, SMTP_MAX_SIZE, Some(on_submission)).await?;
        let imap = ImapSimulator::start(store.clone()).await?;
        Ok(PecProviderSimulator {
            store,
            provider,
            issued,
            smtp,
            imap,
        })
    }

    /// Creates the mailbox `address` (on a hosted domain) with its password.
    pub fn add_user(&self, address: &str, password: &str) {
        self.store.add_user(address, password);
        lock(&self.provider).add_mailbox(address);
    }

    /// The SMTP submission server (implicit TLS).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp.addr()
    }

    /// The IMAP server (implicit TLS).
    pub fn imap_addr(&self) -> SocketAddr {
        self.imap.addr()
    }

    /// The mailboxes (read them, wait for messages, deliver by hand).
    pub fn store(&self) -> &MailStore {
        &self.store
    }

    /// Switches quirks on or off for what happens next.
    pub fn set_quirks(&self, quirks: Quirks) {
        lock(&self.provider).set_quirks(quirks);
    }

    /// Ordinary (non-PEC) mail from outside for the hosted mailbox `to`: a busta di anomalia.
    pub fn receive_external(&self, to: &str, raw: &[u8]) {
        let delivery = lock(&self.provider).receive_external(to, raw);
        deliver_all(&self.store, &self.issued, vec![delivery]);
    }

    /// Every message the provider issued so far, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        lock(&self.issued).clone()
    }

    /// Every message accepted by the SMTP server, as submitted.
    pub fn submissions(&self) -> Vec<Submission> {
        self.smtp.submissions()
    }

    pub async fn shutdown(self) {
        self.smtp.shutdown().await;
        self.imap.shutdown().await;
    }
}
