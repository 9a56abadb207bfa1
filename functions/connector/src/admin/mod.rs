//! The admin use cases: register, read, change and remove PEC accounts, and poll one now.
//!
//! Registering takes one call: every field is checked ([`Registration::parse`]), the connector
//! logs in to the provider's IMAP server and authenticates to its SMTP server *before* saving
//! anything, then stores the password as a secret, saves the account with its mailbox baseline
//! (the first activation imports nothing already there), creates the poll schedule, and
//! provisions Zendesk ([`provision`]): the webhook, the trigger category "PEC Connector" and the
//! account's two triggers. Registering the same address again, or changing an account, updates
//! those objects in place. A new account is refused first when the schedules' quota leaves no
//! room for its schedule ([`AdminError::Capacity`]); a quota that refuses the schedule all the
//! same removes what the registration created.

pub mod instances;
pub mod provision;
pub mod registration;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;
use tracing::info;
use zendesk::{ZendeskClient, ZendeskError};

use crate::domain::{
    Account, AccountId, AttachmentsPolicy, Cursor, InstanceId, InvalidInput, LeaseHolder,
    LeaseOutcome, PollInterval, ReceiptMode, Schedule, UidValidity, ZendeskObjects,
};
use crate::inbound::{Inbound, PollOutcome};
use crate::mailbox::{MailboxError, MailboxProvider, MailboxStatus};
use crate::mailer::{MailerProvider, SendError};
use crate::ports::{Schedules, Secrets, Store};
use crate::schedules::SchedulesError;
use crate::secrets::SecretsError;
use crate::store::StoreError;
use crate::zendesks::{InstanceError, OnInstance, ZendeskDirectory, on_instance};

pub use registration::{Changes, PRESETS, Preset, Registration};

/// How often a registration asks again for a lease another run holds.
const LEASE_RETRY: Duration = Duration::from_millis(200);

/// Settings of the admin use cases.
#[derive(Debug, Clone)]
pub struct AdminOptions {
    /// The URL Zendesk's webhook calls (the api's `/webhooks/zendesk`).
    pub webhook_url: String,
    /// How long provisioning may take in Zendesk.
    pub zendesk_budget: Duration,
    /// How long "poll now" may take.
    pub poll_budget: Duration,
    /// The poll interval of accounts registered without one.
    pub default_poll_interval: PollInterval,
    /// How long a registration waits for the account's lease to record the mailbox baseline
    /// while another run holds it.
    pub lease_wait: Duration,
}

impl AdminOptions {
    pub fn new(webhook_url: impl Into<String>) -> Self {
        Self {
            webhook_url: webhook_url.into(),
            zendesk_budget: Duration::from_secs(20),
            poll_budget: Duration::from_secs(25),
            default_poll_interval: PollInterval::DEFAULT,
            lease_wait: Duration::from_secs(8),
        }
    }
}

/// The admin use cases, over the ports. Cheap to clone (shared adapters).
#[derive(Clone)]
pub struct Admin {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub schedules: Arc<dyn Schedules>,
    pub mailboxes: Arc<dyn MailboxProvider>,
    pub mailers: Arc<dyn MailerProvider>,
    pub zendesk: Arc<ZendeskClient>,
    /// For `POST /accounts/{id}/poll`.
    pub inbound: Arc<Inbound>,
    pub options: AdminOptions,
    /// The deployment's other Zendesk instances (`zendesk` is the default one's client).
    pub instances: Option<Arc<ZendeskDirectory>>,
    /// The instance this value provisions into (`None`: the default one); see [`Admin::on`].
    pub instance: Option<InstanceId>,
}

/// Why an admin call failed. [`AdminError::status`] gives the HTTP status; every message is
/// safe to show (no secret ever).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(InvalidInput),
    /// The provider refused or could not be reached: named by the field to fix.
    #[error("{field}: {message}")]
    Check {
        field: &'static str,
        message: String,
    },
    #[error("no account {0:?}")]
    NotFound(String),
    #[error("the account id {id:?} is already used by {address}")]
    IdTaken { id: String, address: String },
    #[error("state store: {0}")]
    Store(#[from] StoreError),
    #[error("secrets: {0}")]
    Secrets(#[from] SecretsError),
    #[error("schedules: {0}")]
    Schedules(#[from] SchedulesError),
    #[error("zendesk: {0}")]
    Zendesk(#[from] ZendeskError),
    #[error("poll: {0}")]
    Poll(String),
    #[error("{0}")]
    Instance(#[from] InstanceError),
    /// The instance still has accounts.
    #[error("zendesk instance {id:?} still serves {accounts} account(s); delete them first")]
    InstanceInUse { id: String, accounts: usize },
    /// Another run kept the account's lease for longer than a registration waits: the account
    /// is saved but its mailbox baseline is not; registering it again records it.
    #[error(
        "the mailbox of account {id:?} is being read by another run (its lease ends at {until}), \
         so the point from which its messages are imported is not recorded yet; the account is \
         saved: register it again once that run is over"
    )]
    MailboxBusy { id: String, until: DateTime<Utc> },
    /// A quota leaves no room for the new account's poll schedule: refused before anything was
    /// created (or everything created was removed again).
    #[error(
        "cannot register account {id:?}: no room for its poll schedule: {reason}. Nothing was \
         created: {raise}"
    )]
    Capacity {
        id: String,
        reason: String,
        raise: String,
    },
}

impl AdminError {
    pub fn status(&self) -> u16 {
        match self {
            AdminError::Invalid(_) | AdminError::Check { .. } => 422,
            AdminError::NotFound(_) => 404,
            AdminError::IdTaken { .. }
            | AdminError::InstanceInUse { .. }
            | AdminError::Capacity { .. } => 409,
            AdminError::Schedules(e) if e.is_quota() => 409,
            AdminError::Zendesk(e) if !e.is_transient() => 502,
            _ => 503,
        }
    }

    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            AdminError::Invalid(e) => Some(e.field),
            AdminError::Check { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<InvalidInput> for AdminError {
    fn from(e: InvalidInput) -> Self {
        AdminError::Invalid(e)
    }
}

/// An account as admins see it: settings, Zendesk objects and status, never a secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountView {
    pub id: String,
    pub address: String,
    pub username: Option<String>,
    pub imap_host: String,
    pub imap_port: u16,
    pub smtp_host: String,
    pub smtp_port: u16,
    pub poll_interval_minutes: u32,
    pub enabled: bool,
    pub subject_template: String,
    pub message_template: String,
    pub receipt_mode: ReceiptMode,
    pub outbound_attachments: AttachmentsPolicy,
    /// The Zendesk instance (absent: the deployment's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zendesk_instance: Option<String>,
    pub zendesk: ZendeskObjects,
    /// Where an admin opens those objects in Zendesk's admin center.
    pub zendesk_links: ZendeskLinks,
    /// The provider preset whose IMAP server the account uses ([`PRESETS`]), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Largest message imported whole, in MB (absent: the deployment's default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_mb: Option<u64>,
    pub status: AccountStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How an account is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountStatus {
    /// `ok`, or the kind of the ongoing mailbox problem.
    pub mailbox: String,
    /// The ongoing problem, as the server or network said it.
    pub last_error: Option<String>,
    pub problem_since: Option<DateTime<Utc>>,
    /// Whether the mailbox baseline is recorded (the first activation happened).
    pub activated: bool,
    /// The highest UID read so far.
    pub last_uid: Option<u32>,
    pub password_set_at: Option<DateTime<Utc>>,
    pub password_age_days: Option<i64>,
    /// When the last poll ended (successful or not).
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When the last successful poll ended.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last poll's error, if it failed (cleared by a successful poll).
    pub last_poll_error: Option<String>,
    /// What the polls did since registration.
    pub counts: PollCounts,
    /// What the polls did per day (UTC), oldest first: the last 30 days that had any activity.
    pub activity: Vec<crate::domain::DayActivity>,
    /// The last message that could not be imported and was parked (its ticket holds it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_parked: Option<crate::domain::ParkedMessage>,
    /// A message the last polls stopped at; parked after a few polls in a row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<crate::domain::FailingMessage>,
    /// Whether the last poll stopped early to keep part of Zendesk's request limit for the
    /// agents (not a failure: the next poll goes on where it stopped).
    pub last_poll_stopped_for_rate_limit: bool,
    /// What the last poll left and why, when it stopped early for the rate limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll_note: Option<String>,
}

/// Links to an account's objects in Zendesk's admin center (absent: not provisioned).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ZendeskLinks {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_trigger: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_reply_trigger: Option<String>,
    /// The triggers list, where the "PEC Connector" category is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

impl ZendeskLinks {
    /// The admin center pages of `objects` in the Zendesk at `base` (its origin).
    pub fn of(base: &str, objects: &ZendeskObjects) -> Self {
        let base = base.trim_end_matches('/');
        let trigger = |id: u64| format!("{base}/admin/objects-rules/rules/triggers/{id}");
        ZendeskLinks {
            reply_trigger: objects.reply_trigger_id.map(trigger),
            public_reply_trigger: objects.public_reply_trigger_id.map(trigger),
            trigger_category: objects
                .trigger_category_id
                .as_ref()
                .map(|_| format!("{base}/admin/objects-rules/rules/triggers")),
            webhook: objects.webhook_id.as_ref().map(|id| {
                format!("{base}/admin/apps-integrations/actions-webhooks/webhooks/{id}/details")
            }),
        }
    }
}

/// The preset whose servers an account uses, by its IMAP host.
pub fn provider_of(imap_host: &str) -> Option<&'static Preset> {
    PRESETS
        .iter()
        .find(|p| p.imap_host.eq_ignore_ascii_case(imap_host))
}

/// What the polls of an account did since registration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PollCounts {
    pub tickets_created: u64,
    pub comments_added: u64,
    pub receipts_noted: u64,
    pub unreadable: u64,
    /// Messages parked ("PEC non importabile").
    pub parked: u64,
    /// Messages over the size limit, imported with their headers only.
    pub too_large: u64,
    /// Messages the server listed but did not return.
    pub gaps: u64,
    /// Polls that stopped early to keep part of Zendesk's request limit for the agents.
    pub rate_limit_stops: u64,
}

impl OnInstance for Admin {
    fn zendesks(&self) -> (&Arc<ZendeskClient>, Option<&Arc<ZendeskDirectory>>) {
        (&self.zendesk, self.instances.as_ref())
    }

    /// Also its webhook URL (`.../webhooks/zendesk/<instance>`).
    fn with_client(&self, id: &InstanceId, zendesk: Arc<ZendeskClient>) -> Self {
        let mut scoped = self.clone();
        scoped.zendesk = zendesk;
        scoped.instance = Some(id.clone());
        if !scoped.options.webhook_url.is_empty() {
            scoped.options.webhook_url = format!(
                "{}/{}",
                scoped.options.webhook_url.trim_end_matches('/'),
                id.as_str()
            );
        }
        scoped
    }
}

impl Admin {
    /// This admin on Zendesk instance `instance` (`None`: the default one): its client, its
    /// webhook URL (`.../webhooks/zendesk/<instance>`) and its webhook secrets.
    pub async fn on(&self, instance: Option<&InstanceId>) -> Result<Admin, AdminError> {
        let Some(id) = instance else {
            return Ok(self.clone());
        };
        match on_instance(self, id).await {
            Ok(scoped) => Ok(scoped),
            Err(InstanceError::Unknown(_)) => Err(unknown_instance(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /accounts`. Returns the account and whether it was new.
    pub async fn register(&self, reg: Registration) -> Result<(AccountView, bool), AdminError> {
        if reg.zendesk_instance != self.instance {
            let scoped = self.on(reg.zendesk_instance.as_ref()).await?;
            return Box::pin(scoped.register(reg)).await;
        }
        let existing = self.existing(&reg).await?;
        if existing.is_none() {
            self.room_for(&reg.id).await?;
        }
        if let Some(a) = &existing
            && a.zendesk_instance != reg.zendesk_instance
        {
            return Err(AdminError::Invalid(InvalidInput::new(
                "zendesk_instance",
                "cannot be changed for a registered address; delete the account first",
            )));
        }
        let now = Utc::now();
        let mut account = match &existing {
            Some(a) => a.clone(),
            None => Account {
                id: reg.id.clone(),
                address: reg.address.clone(),
                imap: reg.imap.clone(),
                smtp: reg.smtp.clone(),
                username: None,
                poll_interval: PollInterval::DEFAULT,
                enabled: true,
                password_secret: crate::domain::SecretName::AccountPassword(reg.id.clone()).key(),
                subject_template: String::new(),
                message_template: String::new(),
                receipt_mode: ReceiptMode::default(),
                outbound_attachments: AttachmentsPolicy::default(),
                health: Default::default(),
                zendesk_instance: reg.zendesk_instance.clone(),
                zendesk: Default::default(),
                password_set_at: None,
                nonce: Some(registration_nonce()),
                max_message_bytes: None,
                created_at: now,
                updated_at: now,
            },
        };
        account.imap = reg.imap.clone();
        account.smtp = reg.smtp.clone();
        account.username = reg.username.clone();
        account.poll_interval = reg
            .poll_interval
            .or(existing.as_ref().map(|a| a.poll_interval))
            .unwrap_or(self.options.default_poll_interval);
        if existing.is_none() {
            account.subject_template = reg
                .subject_template
                .clone()
                .unwrap_or_else(|| registration::DEFAULT_SUBJECT.to_owned());
            account.message_template = reg
                .message_template
                .clone()
                .unwrap_or_else(|| registration::DEFAULT_MESSAGE.to_owned());
        }
        // Templates given now win; otherwise an existing trigger keeps what an admin edited in
        // Zendesk (the account learns it back).
        let templates = match &existing {
            None => provision::Templates {
                subject: Some(account.subject_template.clone()),
                message: Some(account.message_template.clone()),
            },
            Some(_) => provision::Templates {
                subject: reg.subject_template.clone(),
                message: reg.message_template.clone(),
            },
        };
        account.receipt_mode = reg.receipt_mode;
        account.outbound_attachments = reg.outbound_attachments;
        if let Some(mb) = reg.max_message_mb {
            account.max_message_bytes = Some(mb * 1024 * 1024);
        }
        account.password_set_at = Some(now);
        account.updated_at = now;

        let status = self.check(&account, &reg.password).await?;
        self.secrets
            .put(&account.password_secret_name(), &reg.password)
            .await?;
        let created = existing.is_none();
        if created {
            self.store.create_account(&account).await?;
        } else {
            self.store.update_account(&account).await?;
        }
        // Also for an account whose registration stopped before recording it.
        self.baseline(&account.id, status).await?;
        let id = account.id.clone();
        let account = match self.finish(account, &templates).await {
            Err(AdminError::Schedules(e)) if created && e.is_quota() => {
                return Err(self.undo_for_quota(&id, e).await);
            }
            done => done?,
        };
        self.guard(if reg.guard_notifications {
            provision::Guard::On
        } else {
            provision::Guard::Refresh
        })
        .await?;
        info!(account = %account.id, created, "account registered");
        Ok((self.view(&account).await?, created))
    }

    /// `PATCH /accounts/{id}`, its body read by [`Changes::parse`].
    pub async fn update(
        &self,
        id: &AccountId,
        changes: Changes,
    ) -> Result<AccountView, AdminError> {
        let mut account = self.account(id).await?;
        if account.zendesk_instance != self.instance {
            let scoped = self.on(account.zendesk_instance.as_ref()).await?;
            return Box::pin(scoped.update(id, changes)).await;
        }
        let now = Utc::now();
        if let Some(e) = changes.imap.apply(&account.imap)? {
            account.imap = e;
        }
        if let Some(e) = changes.smtp.apply(&account.smtp)? {
            account.smtp = e;
        }
        if let Some(u) = changes.username.clone() {
            account.username = u;
        }
        if let Some(i) = changes.poll_interval {
            account.poll_interval = i;
        }
        if let Some(s) = changes.subject_template.clone() {
            account.subject_template = s;
        }
        if let Some(m) = changes.message_template.clone() {
            account.message_template = m;
        }
        if let Some(r) = changes.receipt_mode {
            account.receipt_mode = r;
        }
        if let Some(a) = changes.outbound_attachments {
            account.outbound_attachments = a;
        }
        if let Some(e) = changes.enabled {
            account.enabled = e;
        }
        if let Some(mb) = changes.max_message_mb {
            account.max_message_bytes = Some(mb * 1024 * 1024);
        }
        if changes.needs_login_check() {
            let password = match &changes.password {
                Some(p) => p.clone(),
                None => {
                    self.secrets
                        .get_current(&account.password_secret_name(), account.password_set_at)
                        .await?
                }
            };
            self.check(&account, &password).await?;
            if let Some(p) = &changes.password {
                self.secrets.put(&account.password_secret_name(), p).await?;
                account.password_set_at = Some(now);
            }
        }
        account.updated_at = now;
        self.store.update_account(&account).await?;
        let templates = provision::Templates {
            subject: changes.subject_template.clone(),
            message: changes.message_template.clone(),
        };
        let account = self.finish(account, &templates).await?;
        if let Some(on) = changes.guard_notifications {
            self.guard(if on {
                provision::Guard::On
            } else {
                provision::Guard::Off
            })
            .await?;
        }
        info!(account = %account.id, "account changed");
        self.view(&account).await
    }

    /// `GET /accounts`.
    pub async fn list(&self) -> Result<Vec<AccountView>, AdminError> {
        let mut out = Vec::new();
        for account in self.store.list_accounts().await? {
            out.push(self.view(&account).await?);
        }
        Ok(out)
    }

    /// `GET /accounts/{id}`.
    pub async fn get(&self, id: &AccountId) -> Result<AccountView, AdminError> {
        let account = self.account(id).await?;
        self.view(&account).await
    }

    /// `DELETE /accounts/{id}`: the schedule, the triggers, the secret and the state go (and the
    /// webhook and category when no account of this Zendesk is left); the tickets stay.
    pub async fn delete(&self, id: &AccountId) -> Result<(), AdminError> {
        let account = self.account(id).await?;
        if account.zendesk_instance != self.instance {
            let scoped = self.on(account.zendesk_instance.as_ref()).await?;
            return Box::pin(scoped.delete(id)).await;
        }
        let deadline = Instant::now() + self.options.zendesk_budget;
        let others = self
            .store
            .list_accounts()
            .await?
            .into_iter()
            .filter(|a| a.id != account.id && a.zendesk_instance == account.zendesk_instance)
            .count();
        provision::remove(self, &account, others == 0, deadline).await?;
        crate::accounts::remove_account(
            self.store.as_ref(),
            self.secrets.as_ref(),
            self.schedules.as_ref(),
            &account.id,
        )
        .await
        .map_err(|e| -> AdminError {
            match e {
                crate::accounts::AccountsError::Schedule { source, .. } => source.into(),
                crate::accounts::AccountsError::Secret { source, .. } => source.into(),
                crate::accounts::AccountsError::State { source, .. } => source.into(),
            }
        })?;
        if others > 0 {
            // The guard no longer names this account's reply tag.
            self.guard(provision::Guard::Refresh).await?;
        }
        info!(account = %account.id, "account deleted");
        Ok(())
    }

    /// `POST /accounts/{id}/poll`: reads the mailbox now.
    pub async fn poll_now(&self, id: &AccountId) -> Result<PollOutcome, AdminError> {
        self.account(id).await?;
        let deadline = Instant::now() + self.options.poll_budget;
        self.inbound
            .poll(id, deadline)
            .await
            .map_err(|e| AdminError::Poll(e.to_string()))
    }

    async fn account(&self, id: &AccountId) -> Result<Account, AdminError> {
        self.store
            .get_account(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(id.as_str().to_owned()))
    }

    /// The account a registration updates: the same address (whatever its id), else the same
    /// id (refused when it belongs to another address).
    async fn existing(&self, reg: &Registration) -> Result<Option<Account>, AdminError> {
        let accounts = self.store.list_accounts().await?;
        if let Some(a) = accounts.iter().find(|a| a.address == reg.address) {
            return Ok(Some(a.clone()));
        }
        if let Some(a) = accounts.iter().find(|a| a.id == reg.id) {
            return Err(AdminError::IdTaken {
                id: a.id.as_str().to_owned(),
                address: a.address.as_str().to_owned(),
            });
        }
        Ok(None)
    }

    /// Logs in to IMAP (reading the INBOX status for the baseline) and authenticates to SMTP.
    async fn check(
        &self,
        account: &Account,
        password: &SecretString,
    ) -> Result<MailboxStatus, AdminError> {
        let mailbox = self.mailboxes.mailbox(account, password.clone());
        let session = mailbox.open().await.map_err(imap_refusal)?;
        let status = session.status();
        session.close().await;
        let mailer = self.mailers.mailer(account, password.clone());
        mailer.check().await.map_err(smtp_refusal)?;
        Ok(status)
    }

    /// Records the mailbox as the registration's login saw it (`status`), so that polls import
    /// only what arrives later; nothing when a baseline is recorded already.
    ///
    /// The registration's baseline is the right one. A poll that finds no baseline records its
    /// own (first activation) from what it sees then, and imports nothing: nothing that was
    /// already there at registration is imported either way, but what arrived in between would
    /// never be. So when another run holds the lease (a registration of the same address, a
    /// poll that came at once), the registration waits for it, up to
    /// [`AdminOptions::lease_wait`], and then fails saying so ([`AdminError::MailboxBusy`]):
    /// never an account left to a later poll's baseline. A baseline a poll recorded meanwhile
    /// stands: it is at or after this one, and a cursor never moves down.
    async fn baseline(&self, id: &AccountId, status: MailboxStatus) -> Result<(), AdminError> {
        if let Some((Some(_), _)) = self.store.poll_state(id).await? {
            return Ok(());
        }
        let Ok(uid_validity) = UidValidity::new(status.uid_validity) else {
            // A server without UIDVALIDITY: the first poll refuses the mailbox and says so.
            return Ok(());
        };
        let holder = LeaseHolder::unique("register");
        let give_up = Instant::now() + self.options.lease_wait;
        let lease = loop {
            let held_until = match self
                .store
                .take_lease(id, &holder, Utc::now(), Duration::from_secs(60))
                .await
            {
                Ok(LeaseOutcome::Acquired(lease)) => break lease,
                Ok(LeaseOutcome::Held { expires_at, .. }) => expires_at,
                // Released while being taken: try again.
                Err(StoreError::ConditionFailed { .. }) => Utc::now(),
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            if now >= give_up {
                return Err(AdminError::MailboxBusy {
                    id: id.as_str().to_owned(),
                    until: held_until,
                });
            }
            tokio::time::sleep(LEASE_RETRY.min(give_up - now)).await;
        };
        let result = match lease.cursor {
            None => {
                let next = Cursor::first_activation(uid_validity, status.uid_next);
                self.store.advance_cursor(&lease, None, &next).await
            }
            Some(_) => Ok(()),
        };
        self.store.release_lease(&lease).await?;
        result?;
        Ok(())
    }

    /// Refuses a new account when its poll schedule would not fit, before anything is created.
    async fn room_for(&self, id: &AccountId) -> Result<(), AdminError> {
        match self.schedules.capacity().await? {
            Some(c) if c.room() == 0 => Err(AdminError::Capacity {
                id: id.as_str().to_owned(),
                reason: format!("{} of {} {}", c.used, c.limit, c.counted),
                raise: c.raise,
            }),
            _ => Ok(()),
        }
    }

    /// A new account whose schedule a quota refused (a race past [`Admin::room_for`], or a quota
    /// shared with others): removes what its registration created (nothing in Zendesk yet: the
    /// schedule comes first) and says why.
    async fn undo_for_quota(&self, id: &AccountId, e: SchedulesError) -> AdminError {
        if let Err(undo) = crate::accounts::remove_account(
            self.store.as_ref(),
            self.secrets.as_ref(),
            self.schedules.as_ref(),
            id,
        )
        .await
        {
            tracing::error!(account = %id, error = %undo, "cannot remove a registration a quota refused");
            return e.into();
        }
        match e {
            SchedulesError::QuotaExceeded {
                quota,
                message,
                raise,
                ..
            } => AdminError::Capacity {
                id: id.as_str().to_owned(),
                reason: format!("{quota} ({message})"),
                raise,
            },
            other => other.into(),
        }
    }

    /// Schedule and Zendesk objects for a saved account; saves the objects' ids and the
    /// templates its reply trigger carries.
    async fn finish(
        &self,
        mut account: Account,
        templates: &provision::Templates,
    ) -> Result<Account, AdminError> {
        self.schedules
            .put(&Schedule {
                account: account.id.clone(),
                interval: account.poll_interval,
                enabled: account.enabled,
            })
            .await?;
        let deadline = Instant::now() + self.options.zendesk_budget;
        let (objects, (subject, message)) =
            provision::ensure(self, &account, templates, deadline).await?;
        if objects != account.zendesk
            || subject != account.subject_template
            || message != account.message_template
        {
            account.zendesk = objects;
            account.subject_template = subject;
            account.message_template = message;
            self.store.update_account(&account).await?;
        }
        Ok(account)
    }

    /// The guard on Zendesk's standard requester notifications, over every account of this
    /// Zendesk instance.
    async fn guard(&self, guard: provision::Guard) -> Result<(), AdminError> {
        let deadline = Instant::now() + self.options.zendesk_budget;
        let reply_tags: Vec<String> = self
            .store
            .list_accounts()
            .await?
            .iter()
            .filter(|a| a.zendesk_instance == self.instance)
            .map(provision::reply_tag)
            .collect();
        let changed = provision::guard_notifications(self, guard, &reply_tags, deadline).await?;
        if !changed.is_empty() {
            info!(?guard, triggers = ?changed, "standard requester notifications guard updated");
        }
        Ok(())
    }

    /// Links to the account's objects in its Zendesk (none when its instance cannot be read).
    async fn zendesk_links(&self, account: &Account) -> ZendeskLinks {
        if account.zendesk_instance == self.instance {
            return ZendeskLinks::of(self.zendesk.base_url(), &account.zendesk);
        }
        match self.on(account.zendesk_instance.as_ref()).await {
            Ok(scoped) => ZendeskLinks::of(scoped.zendesk.base_url(), &account.zendesk),
            Err(_) => ZendeskLinks::default(),
        }
    }

    async fn view(&self, account: &Account) -> Result<AccountView, AdminError> {
        let problem = account.health.problem.as_ref();
        // Read as stored, never through the lease: a running poll is neither disturbed nor
        // hidden (an account deleted meanwhile shows no poll state).
        let (cursor, stats) = self
            .store
            .poll_state(&account.id)
            .await?
            .unwrap_or_default();
        Ok(AccountView {
            id: account.id.as_str().to_owned(),
            address: account.address.as_str().to_owned(),
            username: account.username.clone(),
            imap_host: account.imap.host.clone(),
            imap_port: account.imap.port,
            smtp_host: account.smtp.host.clone(),
            smtp_port: account.smtp.port,
            poll_interval_minutes: account.poll_interval.as_minutes(),
            enabled: account.enabled,
            subject_template: account.subject_template.clone(),
            message_template: account.message_template.clone(),
            receipt_mode: account.receipt_mode,
            outbound_attachments: account.outbound_attachments,
            zendesk_instance: account
                .zendesk_instance
                .as_ref()
                .map(|i| i.as_str().to_owned()),
            zendesk: account.zendesk.clone(),
            zendesk_links: self.zendesk_links(account).await,
            provider: provider_of(&account.imap.host).map(|p| p.name.to_owned()),
            max_message_mb: account.max_message_bytes.map(|b| b / (1024 * 1024)),
            status: AccountStatus {
                mailbox: problem.map_or("ok".to_owned(), |p| {
                    serde_json::to_value(p.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
                last_error: problem.map(|p| p.message.clone()),
                problem_since: problem.map(|p| p.since),
                activated: cursor.is_some(),
                last_uid: cursor.map(|c| c.last_uid),
                password_set_at: account.password_set_at,
                password_age_days: account.password_set_at.map(|t| (Utc::now() - t).num_days()),
                last_poll_at: stats.last_poll_at,
                last_success_at: stats.last_success_at,
                last_poll_error: stats.last_error,
                counts: PollCounts {
                    tickets_created: stats.tickets_created,
                    comments_added: stats.comments_added,
                    receipts_noted: stats.receipts_noted,
                    unreadable: stats.unreadable,
                    parked: stats.parked,
                    too_large: stats.too_large,
                    gaps: stats.gaps,
                    rate_limit_stops: stats.rate_limit_stops,
                },
                activity: stats.daily,
                last_parked: stats.last_parked,
                failing: stats.failing,
                last_poll_stopped_for_rate_limit: stats.rate_limited.is_some(),
                last_poll_note: stats.rate_limited.as_ref().map(|r| r.describe()),
            },
            created_at: account.created_at,
            updated_at: account.updated_at,
        })
    }
}

/// 6 random bytes, hex: the registration's part of its ticket markers.
fn registration_nonce() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    pec::encode::hex(&bytes)
}

/// An IMAP refusal as the field an admin must fix.
fn unknown_instance(id: &InstanceId) -> AdminError {
    AdminError::Invalid(InvalidInput::new(
        "zendesk_instance",
        format!(
            "no Zendesk instance {:?} is registered (POST /zendesk-instances)",
            id.as_str()
        ),
    ))
}

fn imap_refusal(e: MailboxError) -> AdminError {
    let (field, message) = match &e {
        MailboxError::LoginRefused { .. } => (
            "password",
            format!(
                "{e}. If the mailbox has two-step verification, create an app password \
                 (Aruba: \"password per programmi di posta\") and enable access from mail \
                 programs in the provider's webmail."
            ),
        ),
        MailboxError::Tls { .. } => ("imap_host", e.to_string()),
        MailboxError::Connect { .. } | MailboxError::Io { .. } => (
            "imap_host",
            format!("{e}. Check the IMAP host and port (IMAPS, usually 993)."),
        ),
        MailboxError::Server { .. } => ("imap_host", e.to_string()),
    };
    AdminError::Check { field, message }
}

/// An SMTP refusal as the field an admin must fix. A blocked sending IP address (`5.7.1`, even
/// at AUTH) is the SMTP server's policy, not the password.
fn smtp_refusal(e: SendError) -> AdminError {
    let field = match &e {
        SendError::AuthRejected { .. } => "password",
        _ => "smtp_host",
    };
    let message = match &e {
        SendError::Connect { .. } | SendError::Timeout { .. } => {
            format!("{e}. Check the SMTP host and port (SMTPS, usually 465).")
        }
        SendError::SenderBlocked { .. } => format!(
            "{e}. This is not about the password: ask the provider to allow the connector's \
             IP address (deploy with StaticEgressIp=true and give the provider the EgressIp \
             output), then try again."
        ),
        _ => e.to_string(),
    };
    AdminError::Check { field, message }
}
