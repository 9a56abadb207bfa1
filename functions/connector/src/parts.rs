//! One way to assemble the use cases from a process's adapters, whatever runs them: the Lambdas
//! ([`crate::wiring`], feature `lambda`), `pec-connector serve` and the end-to-end tests each
//! build a [`Parts`] from their own adapters and ask it for the use cases. A dependency a use
//! case gains is wired here, once.

use std::sync::Arc;

use pec::TrustAnchors;
use zendesk::ZendeskClient;

#[cfg(all(feature = "imap", feature = "smtp"))]
use crate::admin::{Admin, AdminOptions};
use crate::inbound::{Inbound, PollOptions};
use crate::mailbox::MailboxProvider;
use crate::mailer::MailerProvider;
use crate::outbound::{Outbound, SendOptions};
#[cfg(all(feature = "imap", feature = "smtp"))]
use crate::ports::Schedules;
use crate::ports::{Secrets, Store};
use crate::zendesks::ZendeskDirectory;

/// The adapters of one process and the settings of its use cases.
#[derive(Clone)]
pub struct Parts {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub mailboxes: Arc<dyn MailboxProvider>,
    pub mailers: Arc<dyn MailerProvider>,
    /// The default Zendesk instance's client (the deployment's own).
    pub zendesk: Arc<ZendeskClient>,
    /// The other Zendesk instances, registered over the admin API.
    pub instances: Arc<ZendeskDirectory>,
    /// Whose signatures make a PEC's signature valid.
    pub anchors: TrustAnchors,
    pub poll: PollOptions,
    pub send: SendOptions,
}

impl Parts {
    /// Adapters with the default settings: the PEC providers' trust anchors, default poll and
    /// send options, and a directory of instances over the same store and secrets.
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn Secrets>,
        mailboxes: Arc<dyn MailboxProvider>,
        mailers: Arc<dyn MailerProvider>,
        zendesk: Arc<ZendeskClient>,
    ) -> Self {
        let instances = Arc::new(ZendeskDirectory::new(store.clone(), secrets.clone()));
        Parts {
            store,
            secrets,
            mailboxes,
            mailers,
            zendesk,
            instances,
            anchors: TrustAnchors::pec(),
            poll: PollOptions::default(),
            send: SendOptions::default(),
        }
    }

    /// The inbound use case (the poll).
    pub fn inbound(&self) -> Inbound {
        Inbound {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            mailboxes: self.mailboxes.clone(),
            zendesk: self.zendesk.clone(),
            anchors: self.anchors.clone(),
            options: self.poll.clone(),
            hook: None,
            instances: Some(self.instances.clone()),
        }
    }

    /// The outbound use case (sends from Zendesk).
    pub fn outbound(&self) -> Outbound {
        Outbound::new(
            self.store.clone(),
            self.secrets.clone(),
            self.mailers.clone(),
            self.zendesk.clone(),
            self.send.clone(),
        )
        .with_instances(self.instances.clone())
    }

    /// The admin use cases, provisioning `schedules`; their "poll now" runs `inbound`.
    #[cfg(all(feature = "imap", feature = "smtp"))]
    pub fn admin(
        &self,
        schedules: Arc<dyn Schedules>,
        inbound: Arc<Inbound>,
        options: AdminOptions,
    ) -> Admin {
        Admin {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            schedules,
            mailboxes: self.mailboxes.clone(),
            mailers: self.mailers.clone(),
            zendesk: self.zendesk.clone(),
            inbound,
            options,
            instances: Some(self.instances.clone()),
            instance: None,
        }
    }
}
