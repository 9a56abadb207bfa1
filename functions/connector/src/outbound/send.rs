//! The send use case: a verified webhook in, one PEC out, its result noted on the ticket.
//!
//! [`Outbound::accept`] is what the webhook route calls. It queues the send in the outbox
//! *already claimed by itself* (one conditional write, keyed on the webhook's dedup key: a second
//! delivery of the same event finds it and sends nothing), then tries it at once within a short
//! budget, so Zendesk gets its answer well under its 10 s timeout:
//!
//! 1. gather what to send from Zendesk: the ticket, the requester, the comment to send (an
//!    agent's newest public comment) and its files (downloaded from the Zendesk host only,
//!    size-capped, as the account's [`AttachmentsPolicy`] says);
//! 2. derive our Message-ID from what is sent (ticket + comment, or the dedup key), so every
//!    attempt of one send carries the same one, and record the outbound message (`Sending`)
//!    *before* handing it to SMTP: receipts then always find their ticket;
//! 3. send over SMTPS, mark the record `Sent` (or `Failed`), and write an Italian internal note.
//!
//! A transient failure (4xx, timeout, network) leaves the entry in the outbox with a backoff;
//! [`Outbound::retry_due`], run by the account's poll, tries it again until
//! [`SendOptions::max_attempts`], then notes the final failure. Before re-sending, a record the
//! provider has already acknowledged by a receipt (accettazione) counts as sent, so a connection
//! dropped after DATA does not send twice once the receipt is in.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use pec::encode::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};
use zendesk::{Comment, TicketComment, ZendeskClient, ZendeskError};

use crate::domain::tags::account_tag;
use crate::domain::{
    Account, AccountId, AttachmentsPolicy, InstanceId, LeaseHolder, MessageId, OutboundRecord,
    OutboxEntry, OutboxId, PecAddress, SendStatus, TicketId, TicketMarker,
};
use crate::mailer::{MailerProvider, SendError};
use crate::outbound::compose::{OutboundFile, OutboundMessage, compose, html_to_text, message_id};
use crate::outbound::webhook::{OutboundRequest, VerifiedWebhook, WebhookError};
use crate::ports::{Secrets, Store};
use crate::render::outbound::{self as notes, SkippedFile};
use crate::store::StoreError;
use crate::zendesks::{InstanceError, ZendeskDirectory};

/// How sends are tried and retried.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Tries in all, the webhook's own included (default 6: at once, then after 1, 2, 4, 8 and
    /// 16 minutes, each at the account's next poll after that).
    pub max_attempts: u32,
    /// The wait before the second try; doubled for each further one (default 60 s).
    pub backoff: Duration,
    /// The longest wait between tries (default 1 h).
    pub max_backoff: Duration,
    /// How long one attempt may take from the webhook, Zendesk reads and SMTP included (default
    /// 7 s, under Zendesk's 10 s webhook timeout).
    pub webhook_budget: Duration,
    /// How long one attempt may take from a poll (default 60 s).
    pub retry_budget: Duration,
    /// How long a claim on an outbox entry lasts; longer than any attempt (default 5 min).
    pub claim_ttl: Duration,
    /// Largest single file sent on (default 25 MB); bigger ones are listed in the note.
    pub max_file_bytes: u64,
    /// Most bytes of files one send downloads, times its recipients (default: what providers
    /// take, 50 MB, and never more than a quarter of the function's memory). Over it, nothing
    /// is downloaded and the note says why.
    pub max_files_bytes: u64,
    /// Most outbox entries one poll retries (default 10).
    pub retry_batch: usize,
    /// How long a send whose final SMTP answer never came is held back before it is tried
    /// again (default 15 minutes): the provider may have taken it, and its accettazione would
    /// say so; the retry waits for a poll that began after this and read the mailbox to its end.
    pub ambiguous_grace: Duration,
    /// The address the connector sends from, when fixed (the deployment's static egress IP):
    /// named in the note when a provider blocks the sending IP.
    pub egress_ip: Option<String>,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            webhook_budget: Duration::from_secs(7),
            retry_budget: Duration::from_secs(60),
            claim_ttl: Duration::from_secs(300),
            max_file_bytes: 25 * 1000 * 1000,
            max_files_bytes: (50 * 1000 * 1000).min(crate::inbound::default_max_message_bytes()),
            retry_batch: 10,
            ambiguous_grace: Duration::from_secs(15 * 60),
            egress_ip: None,
        }
    }
}

/// The outbound use case.
pub struct Outbound {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub mailers: Arc<dyn MailerProvider>,
    pub zendesk: Arc<ZendeskClient>,
    pub options: SendOptions,
    /// The deployment's other Zendesk instances (`zendesk` is the default one's client).
    pub instances: Option<Arc<ZendeskDirectory>>,
    /// Zendesk's "Include attachments in emails", read at most every few minutes.
    email_attachments: Mutex<Option<(Instant, bool)>>,
}

/// What became of a webhook (the body of the 2xx answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Accepted {
    /// The provider's SMTP server accepted the PEC.
    Sent {
        message_id: String,
        recipients: Vec<String>,
    },
    /// This event was received before; nothing more is sent.
    Duplicate,
    /// Not sent yet (the provider asked to wait, or did not answer in time): retried at the
    /// account's next polls.
    Queued { reason: String },
    /// Refused for good; the note on the ticket says why.
    Failed { reason: String },
    /// Nothing to send (e.g. no public agent comment, a ticket that is not a PEC's).
    Ignored { reason: String },
}

/// Why a webhook could not be taken on. Each maps to an HTTP status; each one that follows a
/// proven Zendesk call is also said on the ticket, in Italian ([`AcceptError::note_it`]).
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("no PEC account {0:?} is registered")]
    UnknownAccount(String),
    #[error("the body names no account and ticket {0} did not come from a PEC account")]
    NoAccount(u64),
    #[error("ticket {0} does not exist in Zendesk")]
    UnknownTicket(u64),
    #[error("PEC account {0:?} belongs to another Zendesk instance")]
    OtherInstance(String),
    #[error("PEC account {0:?} is disabled")]
    Disabled(String),
    #[error("the body has keys the trigger does not have: {}", .0.join(", "))]
    UnexpectedKeys(Vec<String>),
    #[error("the connector cannot reach its state store now: {0}")]
    Store(#[from] StoreError),
    #[error("the connector cannot reach Zendesk now: {0}")]
    Zendesk(ZendeskError),
    #[error("{0}")]
    Instance(#[from] InstanceError),
}

impl AcceptError {
    /// 404 for what names nothing known, 422 for a ticket or body we cannot act on, 503 (Zendesk
    /// retries) for our own trouble.
    pub fn status(&self) -> u16 {
        match self {
            AcceptError::UnknownAccount(_)
            | AcceptError::UnknownTicket(_)
            | AcceptError::OtherInstance(_) => 404,
            AcceptError::NoAccount(_)
            | AcceptError::Disabled(_)
            | AcceptError::UnexpectedKeys(_) => 422,
            AcceptError::Store(_) | AcceptError::Zendesk(_) => 503,
            AcceptError::Instance(e) if e.is_transient() => 503,
            AcceptError::Instance(_) => 404,
        }
    }

    /// What the agents are told on the ticket, for refusals they can do something about (none
    /// for our own passing trouble: Zendesk calls again).
    pub fn note_it(&self) -> Option<String> {
        notes::accept_refusal(self)
    }
}

impl crate::zendesks::OnInstance for Outbound {
    fn zendesks(&self) -> (&Arc<ZendeskClient>, Option<&Arc<ZendeskDirectory>>) {
        (&self.zendesk, self.instances.as_ref())
    }

    fn with_client(&self, _: &InstanceId, zendesk: Arc<ZendeskClient>) -> Self {
        Outbound {
            store: self.store.clone(),
            secrets: self.secrets.clone(),
            mailers: self.mailers.clone(),
            zendesk,
            options: self.options.clone(),
            instances: self.instances.clone(),
            email_attachments: Mutex::new(None),
        }
    }
}

/// What [`Outbound::retry_due`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOutcome {
    pub sent: usize,
    pub queued: usize,
    pub failed: usize,
    pub other: usize,
}

/// What the outbox keeps for one send (no secret, no message body for template sends beyond
/// what the trigger gave).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Job {
    Template {
        key: String,
        /// Empty: the ticket's requester, read when sending.
        to: Vec<PecAddress>,
        subject: String,
        message: String,
        /// The public agent comment of the update that fired the trigger: its files go with the
        /// template, and it is not sent again on its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment_id: Option<u64>,
    },
    PublicReply {
        key: String,
        /// The comment to send (entries of older versions may lack it: then the newest public
        /// agent comment).
        comment_id: Option<u64>,
    },
}

impl Job {
    /// The comment whose sending this job decides, if any.
    fn comment(&self) -> Option<u64> {
        match self {
            Job::Template { comment_id, .. } | Job::PublicReply { comment_id, .. } => *comment_id,
        }
    }
}

/// How one attempt ended.
enum Attempt {
    Sent {
        message_id: MessageId,
        recipients: Vec<PecAddress>,
    },
    AlreadyDone,
    Ignored(String),
    /// Refused for good; already noted.
    Failed(String),
    /// The provider got the whole message but its answer never came: it may have left. Held
    /// back until its receipts could show it, never resent blindly.
    Ambiguous {
        reason: String,
        note: String,
        to: Vec<PecAddress>,
    },
    /// Worth another try; `note` is the Italian explanation, `reason` the English one.
    Transient {
        reason: String,
        note: String,
        record: Option<MessageId>,
        to: Vec<PecAddress>,
    },
}

/// Why gathering or sending failed, before the outcome is decided.
enum Trouble {
    Transient(String, String),
    Permanent(String, String),
    Ignored(String),
}

impl From<ZendeskError> for Trouble {
    fn from(e: ZendeskError) -> Self {
        let it = notes::zendesk_trouble(&e);
        if e.is_transient() {
            Trouble::Transient(e.to_string(), it)
        } else {
            Trouble::Permanent(e.to_string(), it)
        }
    }
}

impl From<StoreError> for Trouble {
    fn from(e: StoreError) -> Self {
        Trouble::Transient(e.to_string(), notes::STORE_TROUBLE.to_owned())
    }
}

/// What an attempt gathered to send.
struct Gathered {
    message: OutboundMessage,
    /// The part of the Message-ID that makes it ours and stable.
    unique: String,
    skipped_files: Vec<String>,
}

impl Outbound {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn Secrets>,
        mailers: Arc<dyn MailerProvider>,
        zendesk: Arc<ZendeskClient>,
        options: SendOptions,
    ) -> Self {
        Self {
            store,
            secrets,
            mailers,
            zendesk,
            options,
            instances: None,
            email_attachments: Mutex::new(None),
        }
    }

    /// The same, serving the deployment's other Zendesk instances too.
    pub fn with_instances(mut self, instances: Arc<ZendeskDirectory>) -> Self {
        self.instances = Some(instances);
        self
    }

    /// The Zendesk client of `instance` (`None`: the default one).
    async fn client_of(
        &self,
        instance: Option<&InstanceId>,
    ) -> Result<Arc<ZendeskClient>, InstanceError> {
        crate::zendesks::client_for(&self.zendesk, self.instances.as_ref(), instance).await
    }

    /// This use case on the account's Zendesk instance, when it is not the default one.
    async fn scoped(&self, account: &Account) -> Result<Option<Outbound>, InstanceError> {
        match &account.zendesk_instance {
            None => Ok(None),
            Some(instance) => Ok(Some(crate::zendesks::on_instance(self, instance).await?)),
        }
    }

    /// Takes on a verified webhook of the default Zendesk instance.
    pub async fn accept(
        &self,
        verified: &VerifiedWebhook,
        request: OutboundRequest,
    ) -> Result<Accepted, AcceptError> {
        self.accept_on(None, verified, request).await
    }

    /// Takes on a verified webhook of Zendesk instance `instance` (`None`: the default one):
    /// checks who it is for, queues the send (once per event) and tries it at once. A refusal
    /// that agents can act on is also noted on the ticket.
    pub async fn accept_on(
        &self,
        instance: Option<&InstanceId>,
        verified: &VerifiedWebhook,
        request: OutboundRequest,
    ) -> Result<Accepted, AcceptError> {
        let started = Instant::now();
        let ticket = request.ticket();
        let zendesk = self.client_of(instance).await?;
        match self
            .take_on(&zendesk, instance, verified, request, started)
            .await
        {
            Ok(accepted) => Ok(accepted),
            Err(e) => {
                if let Some(note) = e.note_it() {
                    note_on(&zendesk, ticket, note).await;
                }
                Err(e)
            }
        }
    }

    /// Says on `ticket` (of instance `instance`) that a proven Zendesk call could not be used
    /// (`why`; the note explains in Italian): nothing was sent.
    pub async fn note_unusable_body(
        &self,
        instance: Option<&InstanceId>,
        ticket: TicketId,
        why: &WebhookError,
    ) {
        info!(%ticket, %why, "unusable webhook body noted on the ticket");
        match self.client_of(instance).await {
            Ok(zendesk) => note_on(&zendesk, ticket, notes::unusable_body(why)).await,
            Err(e) => warn!(%ticket, error = %e, "cannot note the unusable webhook body"),
        }
    }

    async fn take_on(
        &self,
        zendesk: &Arc<ZendeskClient>,
        instance: Option<&InstanceId>,
        verified: &VerifiedWebhook,
        request: OutboundRequest,
        started: Instant,
    ) -> Result<Accepted, AcceptError> {
        let ticket = request.ticket();
        let account = self.account_for(zendesk, &request, started).await?;
        if account.zendesk_instance.as_ref() != instance {
            // A call from one Zendesk never sends for another's account.
            return Err(AcceptError::OtherInstance(account.id.as_str().to_owned()));
        }
        if !account.enabled {
            return Err(AcceptError::Disabled(account.id.as_str().to_owned()));
        }
        let scoped = self.scoped(&account).await?;
        let this = scoped.as_ref().unwrap_or(self);
        let deadline = started + self.options.webhook_budget;
        if !request.extra_keys().is_empty() {
            this.check_extra_keys(&account, &request, deadline).await?;
        }
        let key = request.dedup_key(verified);
        match request {
            OutboundRequest::TemplateSend {
                to,
                subject,
                message_html,
                updated_at,
                ..
            } => {
                // The public agent comment of the same update goes with the template: claimed
                // under the comment's own outbox id, so the public-reply path leaves it alone
                // (and a second delivery of this call finds it taken).
                let comment = this
                    .comment_of_update(ticket, updated_at.as_deref(), verified, deadline)
                    .await
                    .map_err(AcceptError::Zendesk)?;
                let id = match comment {
                    Some(c) => comment_outbox_id(ticket, c),
                    None => outbox_id(&key),
                };
                let job = Job::Template {
                    key: key.clone(),
                    to,
                    subject,
                    message: message_html,
                    comment_id: comment,
                };
                let holder = LeaseHolder::unique("webhook");
                if !this
                    .claim(&account, id.clone(), ticket, &job, &holder)
                    .await?
                {
                    // This call again (its PEC is recorded), or the public reply of the same
                    // update already left as a PEC: then the agents are told why no template.
                    let ours = message_id(
                        &account,
                        ticket,
                        &hex(&Sha256::digest(key.as_bytes())[..16]),
                    );
                    let again = this
                        .store
                        .find_outbound(&account.id, &ours)
                        .await?
                        .is_some();
                    if comment.is_some() && !again {
                        this.note(ticket, notes::refused(&notes::reply_went_instead()))
                            .await;
                    }
                    info!(account = %account.id.as_str(), %ticket, key = %key, "webhook already received, or its comment already sent: nothing more sent");
                    return Ok(Accepted::Duplicate);
                }
                let entry = this.entry(&account, id, ticket, &job);
                let accepted = this.run(&account, &entry, &job, &holder, deadline).await?;
                if job.comment().is_some() && !matches!(accepted, Accepted::Queued { .. }) {
                    this.send_replies(&account, ticket, deadline).await?;
                }
                info!(account = %account.id.as_str(), %ticket, ms = started.elapsed().as_millis() as u64, outcome = ?accepted, "webhook handled");
                Ok(accepted)
            }
            OutboundRequest::PublicReply { .. } => {
                let accepted = this.send_replies(&account, ticket, deadline).await?;
                info!(account = %account.id.as_str(), %ticket, ms = started.elapsed().as_millis() as u64, outcome = ?accepted, "webhook handled");
                Ok(accepted)
            }
        }
    }

    /// Sends, in order, the public agent comments of `ticket` that no send has decided yet
    /// (above the ticket's watermark), each once: each is claimed under its own outbox id, so
    /// concurrent calls for one ticket never send a comment twice; a call that finds a comment
    /// claimed stops there (the claimer goes on with the later ones, and reads the comments
    /// again when done, for those added meanwhile). A comment whose send is to be tried again
    /// later stops the run too: the retry goes on from it, keeping the order.
    async fn send_replies(
        &self,
        account: &Account,
        ticket: TicketId,
        deadline: Instant,
    ) -> Result<Accepted, AcceptError> {
        let mut first: Option<Accepted> = None;
        let mut handled: Vec<u64> = Vec::new();
        loop {
            let pending = match self.pending_replies(account, ticket, deadline).await {
                Ok(Pending::Comments(p)) => p,
                Ok(Pending::Nothing(reason)) => {
                    return Ok(first.unwrap_or(Accepted::Ignored { reason }));
                }
                // What was sent is sent; the rest waits for the next call or retry.
                Err(_) if first.is_some() => break,
                Err(e) => return Err(e),
            };
            let fresh: Vec<u64> = pending
                .into_iter()
                .filter(|c| !handled.contains(c))
                .collect();
            if fresh.is_empty() {
                break;
            }
            for c in fresh {
                handled.push(c);
                let job = Job::PublicReply {
                    key: format!("public_reply:{ticket}:comment:{c}"),
                    comment_id: Some(c),
                };
                let holder = LeaseHolder::unique("webhook");
                let id = comment_outbox_id(ticket, c);
                if !self
                    .claim(account, id.clone(), ticket, &job, &holder)
                    .await?
                {
                    // Another call (or a template send) has it and goes on from there.
                    return Ok(first.unwrap_or(Accepted::Duplicate));
                }
                let entry = self.entry(account, id, ticket, &job);
                let accepted = self.run(account, &entry, &job, &holder, deadline).await?;
                let queued = matches!(accepted, Accepted::Queued { .. });
                first.get_or_insert(accepted);
                if queued || Instant::now() >= deadline {
                    return Ok(first.unwrap_or(Accepted::Duplicate));
                }
            }
        }
        Ok(first.unwrap_or(Accepted::Duplicate))
    }

    /// The public agent comments of `ticket` still to be sent, oldest first: above the
    /// ticket's watermark (without one: made in the last hour), at most [`MAX_PENDING`].
    /// [`Pending::Nothing`] when the newest such public comment is not an agent's (said on the
    /// ticket, and decided); an empty list when everything is decided already.
    async fn pending_replies(
        &self,
        account: &Account,
        ticket: TicketId,
        deadline: Instant,
    ) -> Result<Pending, AcceptError> {
        let zticket = zendesk::TicketId(ticket.get());
        let t = match self.zendesk.get_ticket(zticket, deadline).await {
            Ok(t) => t,
            Err(ZendeskError::NotFound { .. }) => {
                return Ok(Pending::Nothing(format!(
                    "ticket {ticket} no longer exists"
                )));
            }
            Err(e) => return Err(AcceptError::Zendesk(e)),
        };
        if !t
            .tags
            .iter()
            .any(|tag| *tag == account_tag(account.address.as_str()))
        {
            self.note(ticket, notes::refused(&notes::not_this_account(account)))
                .await;
            return Ok(Pending::Nothing(format!(
                "ticket {ticket} is not a ticket of PEC account {}",
                account.id.as_str()
            )));
        }
        let watermark = self.store.outbound_watermark(&account.id, ticket).await?;
        let comments = self
            .zendesk
            .latest_comments(zticket, 100, deadline)
            .await
            .map_err(AcceptError::Zendesk)?;
        let since = Utc::now() - TimeDelta::hours(1);
        let mut roles = Roles::default();
        let mut pending = Vec::new();
        let mut newest: Option<(u64, bool)> = None;
        for c in comments.iter().filter(|c| c.public) {
            if watermark.is_some_and(|w| c.id <= w)
                || (watermark.is_none() && created(c).is_some_and(|at| at < since))
            {
                break;
            }
            let agent = self
                .is_agent_reply(c, &mut roles, deadline)
                .await
                .map_err(AcceptError::Zendesk)?;
            newest.get_or_insert((c.id, agent));
            if agent {
                pending.push(c.id);
            }
        }
        if let Some((id, false)) = newest
            && pending.is_empty()
        {
            self.note(ticket, notes::refused(&notes::not_an_agent_reply()))
                .await;
            if let Err(e) = self
                .store
                .advance_outbound_watermark(&account.id, ticket, id)
                .await
            {
                warn!(%ticket, error = %e, "cannot move the outbound watermark");
            }
            return Ok(Pending::Nothing(format!(
                "comment {id} is not a public agent comment"
            )));
        }
        pending.reverse();
        pending.truncate(MAX_PENDING);
        Ok(Pending::Comments(pending))
    }

    /// Whether a public comment is an agent's reply to send: written by an agent or admin (not
    /// an end user, such as a CC), and not by the connector itself (inbound PEC carry its
    /// reference).
    async fn is_agent_reply(
        &self,
        c: &TicketComment,
        roles: &mut Roles,
        deadline: Instant,
    ) -> Result<bool, ZendeskError> {
        if c.html_body.contains(CONNECTOR_REFERENCE) || c.body.contains(CONNECTOR_REFERENCE) {
            return Ok(false);
        }
        let Some(author) = c.author_id else {
            return Ok(false);
        };
        if let Some((_, agent)) = roles.0.iter().find(|(id, _)| *id == author) {
            return Ok(*agent);
        }
        let agent = match self.zendesk.get_user(author, deadline).await {
            Ok(u) => matches!(u.role.as_deref(), Some("agent" | "admin")),
            Err(ZendeskError::NotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        roles.0.push((author, agent));
        Ok(agent)
    }

    /// The public agent comment made in the update that fired a template send: the one created
    /// at `updated_at` (`{{ticket.updated_at_with_timestamp}}`); for a trigger without it, the
    /// newest public comment if an agent made it in the minute before the call was signed.
    async fn comment_of_update(
        &self,
        ticket: TicketId,
        updated_at: Option<&str>,
        verified: &VerifiedWebhook,
        deadline: Instant,
    ) -> Result<Option<u64>, ZendeskError> {
        let zticket = zendesk::TicketId(ticket.get());
        let comments = match self.zendesk.latest_comments(zticket, 10, deadline).await {
            Ok(c) => c,
            Err(ZendeskError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let at = updated_at.and_then(parse_time);
        for c in comments.iter().filter(|c| c.public) {
            let Some(created) = created(c) else { continue };
            match at {
                Some(at) if created > at => continue,
                Some(at) if created < at => return Ok(None),
                Some(_) => {}
                None => {
                    let age = verified.timestamp - created;
                    if age < TimeDelta::zero() || age > TimeDelta::minutes(1) {
                        return Ok(None);
                    }
                }
            }
            let agent = self
                .is_agent_reply(c, &mut Roles::default(), deadline)
                .await?;
            return Ok(agent.then_some(c.id));
        }
        Ok(None)
    }

    /// Accepts keys the connector did not provision only when the account's trigger in Zendesk
    /// has them in its webhook body (an admin added them); otherwise a placeholder value broke
    /// out of its string, and nothing is sent.
    async fn check_extra_keys(
        &self,
        account: &Account,
        request: &OutboundRequest,
        deadline: Instant,
    ) -> Result<(), AcceptError> {
        let trigger = match request {
            OutboundRequest::TemplateSend { .. } => account.zendesk.reply_trigger_id,
            OutboundRequest::PublicReply { .. } => account.zendesk.public_reply_trigger_id,
        };
        let unexpected = || AcceptError::UnexpectedKeys(request.extra_keys().to_vec());
        let Some(trigger) = trigger else {
            return Err(unexpected());
        };
        let trigger = match self.zendesk.get_trigger(trigger, deadline).await {
            Ok(t) => t,
            Err(ZendeskError::NotFound { .. }) => return Err(unexpected()),
            Err(e) => return Err(AcceptError::Zendesk(e)),
        };
        let allowed = trigger_body_keys(&trigger.actions);
        if request.extra_keys().iter().all(|k| allowed.contains(k)) {
            Ok(())
        } else {
            Err(unexpected())
        }
    }

    /// Queues `job` under `id`, already claimed by `holder`; false when the id is taken (the
    /// same event delivered again, or the comment claimed by another send) or the job's comment
    /// was decided meanwhile. Claim first, then look at the watermark: a send that decided the
    /// comment moved the watermark before giving its claim up, so one of the two always shows.
    async fn claim(
        &self,
        account: &Account,
        id: OutboxId,
        ticket: TicketId,
        job: &Job,
        holder: &LeaseHolder,
    ) -> Result<bool, AcceptError> {
        if !self
            .claim_new(account, id.clone(), ticket, job, holder)
            .await?
        {
            return Ok(false);
        }
        let Some(comment) = job.comment() else {
            return Ok(true);
        };
        let watermark = self.store.outbound_watermark(&account.id, ticket).await?;
        if watermark.is_some_and(|w| w >= comment) {
            self.store.complete_outbox(&account.id, &id, holder).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Queues `job` under `id`, already claimed by `holder`; false when the id is taken.
    async fn claim_new(
        &self,
        account: &Account,
        id: OutboxId,
        ticket: TicketId,
        job: &Job,
        holder: &LeaseHolder,
    ) -> Result<bool, AcceptError> {
        let entry = self.entry(account, id, ticket, job);
        let claimed_until = Utc::now() + delta(self.options.claim_ttl);
        match self
            .store
            .enqueue_outbox_claimed(&entry, holder, claimed_until)
            .await
        {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The outbox entry of `job`: its first try is the one about to be made.
    fn entry(&self, account: &Account, id: OutboxId, ticket: TicketId, job: &Job) -> OutboxEntry {
        let payload = serde_json::to_value(job).unwrap_or_default();
        let mut entry = OutboxEntry::new(account.id.clone(), id, ticket, payload, Utc::now());
        entry.attempts = 1;
        entry
    }

    /// Tries again the account's due sends, run by a poll that read the mailbox to its end and
    /// started at `caught_up_since`: only entries due by then are taken (a send held back for
    /// its receipts is tried again only once a poll that began after its grace read every
    /// receipt that had come). One entry is claimed at a time, and only while `deadline` leaves
    /// room for a whole attempt, so a claim is always an attempt.
    pub async fn retry_due(
        &self,
        id: &AccountId,
        caught_up_since: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<RetryOutcome, StoreError> {
        let mut outcome = RetryOutcome::default();
        let Some(account) = self.store.get_account(id).await? else {
            return Ok(outcome);
        };
        if !account.enabled {
            // Paused: its queued sends wait until it is enabled again.
            return Ok(outcome);
        }
        let scoped = match self.scoped(&account).await {
            Ok(scoped) => scoped,
            Err(e) => {
                warn!(account = %id.as_str(), error = %e, "cannot retry: the account's Zendesk instance");
                return Ok(outcome);
            }
        };
        let this = scoped.as_ref().unwrap_or(self);
        let holder = LeaseHolder::unique("retry");
        for _ in 0..self.options.retry_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < MIN_ATTEMPT {
                break;
            }
            let Some(entry) = self
                .store
                .claim_outbox(id, &holder, caught_up_since, self.options.claim_ttl, 1)
                .await?
                .pop()
            else {
                break;
            };
            let job: Job = match serde_json::from_value(entry.payload.clone()) {
                Ok(job) => job,
                Err(e) => {
                    // Written by another version: say so once and drop it rather than loop.
                    warn!(account = %id.as_str(), entry = %entry.id.as_str(), error = %e, "unreadable outbox entry dropped");
                    self.store.complete_outbox(id, &entry.id, &holder).await?;
                    outcome.other += 1;
                    continue;
                }
            };
            let attempt_deadline = Instant::now() + self.options.retry_budget.min(left);
            let result = this
                .run(&account, &entry, &job, &holder, attempt_deadline)
                .await;
            // A decided comment lets the ticket's later replies go, in order.
            if job.comment().is_some()
                && matches!(&result, Ok(a) if !matches!(a, Accepted::Queued { .. }))
                && let Err(e) = this
                    .send_replies(&account, entry.ticket, attempt_deadline)
                    .await
            {
                warn!(account = %id.as_str(), ticket = %entry.ticket, error = %e, "cannot send the ticket's later replies; the next call or poll tries again");
            }
            match result {
                Ok(Accepted::Sent { .. }) => outcome.sent += 1,
                Ok(Accepted::Queued { .. }) => outcome.queued += 1,
                Ok(Accepted::Failed { .. }) => outcome.failed += 1,
                Ok(_) => outcome.other += 1,
                Err(AcceptError::Store(e)) => return Err(e),
                Err(e) => {
                    warn!(account = %id.as_str(), error = %e, "retry failed");
                    outcome.queued += 1;
                }
            }
        }
        Ok(outcome)
    }

    /// The account a request is for: named in the body, or found from the ticket's marker.
    async fn account_for(
        &self,
        zendesk: &ZendeskClient,
        request: &OutboundRequest,
        started: Instant,
    ) -> Result<Account, AcceptError> {
        let ticket = request.ticket();
        let id = match request.account() {
            Some(id) => id.clone(),
            None => {
                let deadline = started + self.options.webhook_budget / 2;
                let t = match zendesk
                    .get_ticket(zendesk::TicketId(ticket.get()), deadline)
                    .await
                {
                    Ok(t) => t,
                    Err(ZendeskError::NotFound { .. }) => {
                        return Err(AcceptError::UnknownTicket(ticket.get()));
                    }
                    Err(e) => return Err(AcceptError::Zendesk(e)),
                };
                t.external_id
                    .as_deref()
                    .and_then(TicketMarker::parse)
                    .map(|m| m.account)
                    .ok_or(AcceptError::NoAccount(ticket.get()))?
            }
        };
        self.store
            .get_account(&id)
            .await?
            .ok_or_else(|| AcceptError::UnknownAccount(id.as_str().to_owned()))
    }

    /// One attempt of a claimed entry, and the outbox bookkeeping that follows.
    async fn run(
        &self,
        account: &Account,
        entry: &OutboxEntry,
        job: &Job,
        holder: &LeaseHolder,
        deadline: Instant,
    ) -> Result<Accepted, AcceptError> {
        let budget = deadline.saturating_duration_since(Instant::now());
        // The previous try got no answer after the whole message: a resend now (its receipts
        // were read and none came) says so.
        let after_ambiguity = entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with(AMBIGUOUS));
        let attempt = match tokio::time::timeout(
            budget,
            self.attempt(account, entry.ticket, job, after_ambiguity, deadline),
        )
        .await
        {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Transient {
                reason: format!("the attempt took longer than {} s", budget.as_secs_f32()),
                note: "Il gestore PEC o Zendesk non hanno risposto in tempo. Il connettore \
                           riproverà automaticamente più tardi: non serve fare nulla."
                    .to_owned(),
                record: None,
                to: Vec::new(),
            },
        };
        let (id, ticket) = (&account.id, entry.ticket);
        let accepted = match attempt {
            Attempt::Sent {
                message_id,
                recipients,
            } => Accepted::Sent {
                message_id: message_id.as_str().to_owned(),
                recipients: recipients.iter().map(|r| r.as_str().to_owned()).collect(),
            },
            Attempt::AlreadyDone => Accepted::Duplicate,
            Attempt::Ignored(reason) => {
                self.note(ticket, notes::refused(&notes::nothing_sent()))
                    .await;
                Accepted::Ignored { reason }
            }
            Attempt::Failed(reason) => Accepted::Failed { reason },
            Attempt::Ambiguous { reason, note, to } => {
                if entry.attempts >= self.options.max_attempts {
                    warn!(account = %id.as_str(), %ticket, attempts = entry.attempts, %reason, "send never confirmed: given up");
                    self.note(ticket, notes::never_confirmed(&to, entry.attempts, &note))
                        .await;
                    Accepted::Failed { reason }
                } else {
                    let not_before = Utc::now() + delta(self.options.ambiguous_grace);
                    self.store
                        .retry_outbox(
                            id,
                            &entry.id,
                            holder,
                            not_before,
                            &format!("{AMBIGUOUS}{reason}"),
                        )
                        .await?;
                    self.note(ticket, notes::maybe_sent(&to, &note)).await;
                    warn!(account = %id.as_str(), %ticket, attempts = entry.attempts, %reason, hold_s = self.options.ambiguous_grace.as_secs(), "send not confirmed: held back until its receipts are read");
                    return Ok(Accepted::Queued { reason });
                }
            }
            Attempt::Transient {
                reason,
                note,
                record,
                to,
            } => {
                if entry.attempts >= self.options.max_attempts {
                    warn!(account = %id.as_str(), %ticket, attempts = entry.attempts, %reason, "send given up");
                    if let Some(mid) = &record {
                        self.mark(account, mid, SendStatus::Failed).await;
                    }
                    let html = notes::given_up(&to, entry.attempts, &note);
                    self.note(ticket, html).await;
                    Accepted::Failed { reason }
                } else {
                    let wait = backoff_after(&self.options, entry.attempts);
                    let not_before = Utc::now() + delta(wait);
                    self.store
                        .retry_outbox(id, &entry.id, holder, not_before, &reason)
                        .await?;
                    if entry.attempts == 1 {
                        self.note(ticket, notes::will_retry(&to, &note)).await;
                    }
                    info!(account = %id.as_str(), %ticket, attempts = entry.attempts, %reason, retry_in_s = wait.as_secs(), "send queued for a retry");
                    return Ok(Accepted::Queued { reason });
                }
            }
        };
        // Decided for good: the comment it carried is never sent again (the watermark moves
        // before the entry goes, so there is no moment when neither says so).
        if let Some(comment) = job.comment() {
            self.store
                .advance_outbound_watermark(id, ticket, comment)
                .await?;
        }
        self.store.complete_outbox(id, &entry.id, holder).await?;
        Ok(accepted)
    }

    async fn attempt(
        &self,
        account: &Account,
        ticket: TicketId,
        job: &Job,
        after_ambiguity: bool,
        deadline: Instant,
    ) -> Attempt {
        let gathered = match self.gather(account, ticket, job, deadline).await {
            Ok(g) => g,
            Err(Trouble::Ignored(reason)) => {
                info!(account = %account.id.as_str(), %ticket, %reason, "nothing to send");
                return Attempt::Ignored(reason);
            }
            Err(Trouble::Permanent(reason, note)) => {
                self.note(ticket, notes::not_sent(&[], &note)).await;
                return Attempt::Failed(reason);
            }
            Err(Trouble::Transient(reason, note)) => {
                return Attempt::Transient {
                    reason,
                    note,
                    record: None,
                    to: Vec::new(),
                };
            }
        };
        let to = gathered.message.to.clone();
        let mid = message_id(account, ticket, &gathered.unique);
        match self.store.find_outbound(&account.id, &mid).await {
            Ok(Some(existing)) => match existing.status {
                SendStatus::Sent | SendStatus::Failed => return Attempt::AlreadyDone,
                SendStatus::Sending if existing.provider_refused_it() => {
                    // An avviso di non accettazione: the provider took nothing.
                    self.mark(account, &mid, SendStatus::Failed).await;
                    return Attempt::AlreadyDone;
                }
                SendStatus::Sending if existing.provider_took_it() => {
                    // A receipt proves the provider took it (the answer to DATA was lost).
                    self.mark(account, &mid, SendStatus::Sent).await;
                    self.note(
                        ticket,
                        notes::sent(
                            &gathered.message,
                            &gathered.skipped_files,
                            &mid,
                            account.receipt_mode,
                        ),
                    )
                    .await;
                    return Attempt::AlreadyDone;
                }
                SendStatus::Sending => {}
            },
            Ok(None) => {
                let record = OutboundRecord::sent(
                    account.id.clone(),
                    mid.clone(),
                    ticket,
                    to.clone(),
                    Utc::now(),
                )
                .with_status(SendStatus::Sending);
                match self.store.record_outbound(&record).await {
                    Ok(()) | Err(StoreError::AlreadyExists { .. }) => {}
                    Err(e) => {
                        return Attempt::Transient {
                            reason: e.to_string(),
                            note: Trouble::from(e).into_note(),
                            record: None,
                            to,
                        };
                    }
                }
            }
            Err(e) => {
                return Attempt::Transient {
                    reason: e.to_string(),
                    note: Trouble::from(e).into_note(),
                    record: None,
                    to,
                };
            }
        }

        let raw = match compose(&gathered.message, &mid, Utc::now()) {
            Ok(raw) => raw,
            Err(e) => {
                self.mark(account, &mid, SendStatus::Failed).await;
                self.note(ticket, notes::not_sent(&to, &notes::compose_it(&e)))
                    .await;
                return Attempt::Failed(e.to_string());
            }
        };
        let password = match self
            .secrets
            .get_current(&account.password_secret_name(), account.password_set_at)
            .await
        {
            Ok(p) => p,
            Err(e) if e.is_transient() => {
                return Attempt::Transient {
                    reason: e.to_string(),
                    note: "Il connettore non ha potuto leggere la password della casella PEC; \
                           riproverà."
                        .to_owned(),
                    record: Some(mid),
                    to,
                };
            }
            Err(e) => {
                self.mark(account, &mid, SendStatus::Failed).await;
                let note = "La password della casella PEC non è registrata nel connettore: \
                            l'amministratore deve impostarla di nuovo. Il messaggio non è stato \
                            inviato.";
                self.note(ticket, notes::not_sent(&to, note)).await;
                return Attempt::Failed(e.to_string());
            }
        };
        let mailer = self.mailers.mailer(account, password);
        let recipients: Vec<String> = to.iter().map(|r| r.as_str().to_owned()).collect();
        match mailer
            .send(account.address.as_str(), &recipients, &raw)
            .await
        {
            Ok(receipt) => {
                info!(account = %account.id.as_str(), %ticket, message_id = %mid.as_str(), reply = %receipt.server_reply, after_ambiguity, "PEC sent");
                self.mark(account, &mid, SendStatus::Sent).await;
                let mut html = notes::sent(
                    &gathered.message,
                    &gathered.skipped_files,
                    &mid,
                    account.receipt_mode,
                );
                if after_ambiguity {
                    html.push_str(notes::RESENT);
                }
                self.note(ticket, html).await;
                Attempt::Sent {
                    message_id: mid,
                    recipients: to,
                }
            }
            Err(e) if e.is_ambiguous() => Attempt::Ambiguous {
                reason: e.to_string(),
                note: e.explain_it(),
                to,
            },
            Err(e) if e.is_transient() => Attempt::Transient {
                reason: e.to_string(),
                note: e.explain_it(),
                record: Some(mid),
                to,
            },
            Err(e) => {
                warn!(account = %account.id.as_str(), %ticket, error = %e, "PEC refused");
                if matches!(e, SendError::AuthRejected { .. }) {
                    // The password kept in this process may be out of date.
                    self.secrets.forget(&account.password_secret_name());
                }
                self.mark(account, &mid, SendStatus::Failed).await;
                let mut note = e.explain_it();
                if matches!(e, SendError::SenderBlocked { .. }) {
                    note.push(' ');
                    note.push_str(&notes::egress_ip_it(self.options.egress_ip.as_deref()));
                }
                self.note(ticket, notes::not_sent(&to, &note)).await;
                Attempt::Failed(e.to_string())
            }
        }
    }

    /// Reads from Zendesk what to send.
    async fn gather(
        &self,
        account: &Account,
        ticket: TicketId,
        job: &Job,
        deadline: Instant,
    ) -> Result<Gathered, Trouble> {
        let zticket = zendesk::TicketId(ticket.get());
        let t = match self.zendesk.get_ticket(zticket, deadline).await {
            Ok(t) => t,
            Err(ZendeskError::NotFound { .. }) => {
                return Err(Trouble::Ignored(format!(
                    "ticket {ticket} no longer exists"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let comments = self.zendesk.latest_comments(zticket, 100, deadline).await?;
        let comment = match job {
            // The comment of the template's own update, if it had one: never an older one.
            Job::Template { comment_id, .. } => {
                comment_id.and_then(|id| comments.iter().find(|c| c.id == id))
            }
            Job::PublicReply { comment_id, .. } => match comment_id {
                Some(id) => comments.iter().find(|c| c.id == *id),
                // An entry of an older version: the newest public agent comment.
                None => pick_comment(&comments, t.requester_id),
            },
        };
        if let (Job::PublicReply { comment_id, .. }, Some(c)) = (job, comment)
            && comment_id.is_some()
            && !(c.public
                && self
                    .is_agent_reply(c, &mut Roles::default(), deadline)
                    .await?)
        {
            return Err(Trouble::Ignored(format!(
                "comment {} is not a public agent comment",
                c.id
            )));
        }
        let thread = self.thread_of(account, t.external_id.as_deref()).await?;

        let requester = || async {
            let Some(id) = t.requester_id else {
                return Err(Trouble::Permanent(
                    format!("ticket {ticket} has no requester"),
                    notes::NO_REQUESTER.to_owned(),
                ));
            };
            let requester = self.zendesk.get_user(id, deadline).await?;
            requester
                .email
                .as_deref()
                .and_then(|e| PecAddress::parse(e).ok())
                .ok_or_else(|| {
                    Trouble::Permanent(
                        format!("the requester of ticket {ticket} has no usable e-mail address"),
                        "Il richiedente del ticket non ha un indirizzo e-mail valido a cui \
                         inviare la PEC."
                            .to_owned(),
                    )
                })
        };
        let (to, subject, html, unique) = match job {
            Job::Template {
                key,
                to,
                subject,
                message,
                ..
            } => {
                let to = if to.is_empty() {
                    vec![requester().await?]
                } else {
                    to.clone()
                };
                (
                    to,
                    subject.clone(),
                    message_html(message),
                    hex(&Sha256::digest(key.as_bytes())[..16]),
                )
            }
            Job::PublicReply { comment_id, .. } => {
                let Some(comment) = comment else {
                    return Err(Trouble::Ignored(match comment_id {
                        Some(id) => format!("comment {id} is not on the ticket"),
                        None => "the ticket has no public agent comment to send".to_owned(),
                    }));
                };
                let address = requester().await?;
                let subject = reply_subject(t.subject.as_deref().unwrap_or_default());
                (
                    vec![address],
                    subject,
                    comment.html_body.clone(),
                    format!("c{}", comment.id),
                )
            }
        };
        let (attachments, skipped_files) = match comment {
            Some(c) if !c.attachments.is_empty() => {
                self.files(account, c, to.len(), deadline).await?
            }
            _ => (Vec::new(), Vec::new()),
        };
        let text = Some(html_to_text(&html));
        Ok(Gathered {
            message: OutboundMessage {
                from: account.address.clone(),
                from_name: None,
                to,
                subject,
                html,
                text,
                attachments,
                in_reply_to: thread.clone(),
                references: thread.into_iter().collect(),
                ticket,
            },
            unique,
            skipped_files,
        })
    }

    /// The PEC the ticket came from (In-Reply-To), from the ticket's marker.
    async fn thread_of(
        &self,
        account: &Account,
        external_id: Option<&str>,
    ) -> Result<Option<MessageId>, Trouble> {
        let Some(marker) = external_id.and_then(TicketMarker::parse) else {
            return Ok(None);
        };
        if !marker.is_of(account) {
            // Another account's ticket, or one of an earlier registration of this id.
            return Ok(None);
        }
        let record = self
            .store
            .find_message(&account.id, marker.uid_validity, marker.uid)
            .await?;
        Ok(record.and_then(|r| r.message_id))
    }

    /// The comment's files to send to `recipients` addresses, and the names of those left out
    /// (with why).
    async fn files(
        &self,
        account: &Account,
        comment: &TicketComment,
        recipients: usize,
        deadline: Instant,
    ) -> Result<(Vec<OutboundFile>, Vec<String>), Trouble> {
        let send = match account.outbound_attachments {
            AttachmentsPolicy::On => true,
            AttachmentsPolicy::Off => false,
            AttachmentsPolicy::Zendesk => self.zendesk_sends_attachments(deadline).await?,
        };
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        // The sizes Zendesk announces, summed before anything is downloaded: a send over what
        // the provider takes (or the memory allows) fails at once, with nothing in memory.
        let wanted: Vec<&zendesk::Attachment> = comment
            .attachments
            .iter()
            .filter(|a| send && a.size <= self.options.max_file_bytes)
            .collect();
        let total: u64 = wanted.iter().map(|a| a.size).sum();
        let weight = total.saturating_mul(recipients.max(1) as u64);
        if weight > self.options.max_files_bytes {
            let list: Vec<String> = wanted
                .iter()
                .map(|a| format!("{} ({:.1} MB)", a.file_name, a.size as f64 / 1e6))
                .collect();
            return Err(Trouble::Permanent(
                format!(
                    "the files weigh {total} bytes for {recipients} recipient(s), over {}",
                    self.options.max_files_bytes
                ),
                notes::files_too_large(total, recipients, self.options.max_files_bytes, &list),
            ));
        }
        for a in &comment.attachments {
            if !send {
                skipped.push(notes::skipped_file(&a.file_name, SkippedFile::Disabled));
                continue;
            }
            if a.size > self.options.max_file_bytes {
                skipped.push(notes::skipped_file(
                    &a.file_name,
                    SkippedFile::Over(self.options.max_file_bytes),
                ));
                continue;
            }
            match self
                .zendesk
                .download_attachment(&a.content_url, self.options.max_file_bytes, deadline)
                .await
            {
                Ok(data) => files.push(OutboundFile {
                    filename: a.file_name.clone(),
                    content_type: if a.content_type.is_empty() {
                        "application/octet-stream".to_owned()
                    } else {
                        a.content_type.clone()
                    },
                    data,
                }),
                Err(ZendeskError::ForeignHost { url_host }) => {
                    warn!(file = %a.file_name, host = %url_host, "attachment outside the Zendesk host: not downloaded");
                    skipped.push(notes::skipped_file(
                        &a.file_name,
                        SkippedFile::ForeignHost(&url_host),
                    ));
                }
                Err(ZendeskError::AttachmentUrl { reason }) => {
                    warn!(file = %a.file_name, %reason, "attachment not downloadable");
                    skipped.push(notes::skipped_file(&a.file_name, SkippedFile::BadUrl));
                }
                Err(ZendeskError::AttachmentTooLarge { limit, .. }) => {
                    skipped.push(notes::skipped_file(&a.file_name, SkippedFile::Over(limit)))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok((files, skipped))
    }

    async fn zendesk_sends_attachments(&self, deadline: Instant) -> Result<bool, Trouble> {
        const FRESH: Duration = Duration::from_secs(300);
        if let Some((at, on)) = *self.email_attachments.lock().expect("not poisoned")
            && at.elapsed() < FRESH
        {
            return Ok(on);
        }
        let on = self.zendesk.email_attachments_enabled(deadline).await?;
        *self.email_attachments.lock().expect("not poisoned") = Some((Instant::now(), on));
        Ok(on)
    }

    /// Marks a record; a failure here is logged (the PEC's fate is already decided).
    async fn mark(&self, account: &Account, mid: &MessageId, status: SendStatus) {
        if let Err(e) = self
            .store
            .set_outbound_status(&account.id, mid, status)
            .await
        {
            warn!(account = %account.id.as_str(), message_id = %mid.as_str(), status = status.as_str(), error = %e, "cannot mark the outbound record");
        }
    }

    /// Adds an internal note; a failure is logged (the send itself is not undone by it).
    async fn note(&self, ticket: TicketId, html: String) {
        note_on(&self.zendesk, ticket, html).await;
    }
}

impl Trouble {
    fn into_note(self) -> String {
        match self {
            Trouble::Transient(_, n) | Trouble::Permanent(_, n) => n,
            Trouble::Ignored(r) => r,
        }
    }
}

/// The newest public comment by someone other than the requester that the connector did not
/// write itself (inbound PEC carry its reference): what outbox entries of older versions, which
/// name no comment, send.
fn pick_comment(comments: &[TicketComment], requester: Option<u64>) -> Option<&TicketComment> {
    comments.iter().find(|c| {
        c.public
            && (requester.is_none() || c.author_id != requester)
            && !c.html_body.contains(CONNECTOR_REFERENCE)
            && !c.body.contains(CONNECTOR_REFERENCE)
    })
}

/// What is left to send on a ticket.
enum Pending {
    /// Comment ids, oldest first (empty: all decided).
    Comments(Vec<u64>),
    /// Nothing to send, and why.
    Nothing(String),
}

/// How an outbox entry's last error starts when its send got no answer after the message.
const AMBIGUOUS: &str = "ambiguous: ";

/// The least time a retry is started with (SMTP and the Zendesk reads and note).
const MIN_ATTEMPT: Duration = Duration::from_secs(10);

/// Most comments one call sends for a ticket.
const MAX_PENDING: usize = 10;

/// The roles of comment authors already looked up in this call: (user id, is an agent).
#[derive(Default)]
struct Roles(Vec<(u64, bool)>);

/// The outbox id under which the send of comment `comment` of `ticket` is claimed, by the
/// public-reply path or by a template send that carries it.
fn comment_outbox_id(ticket: TicketId, comment: u64) -> OutboxId {
    outbox_id(&format!("public_reply:{ticket}:comment:{comment}"))
}

/// A time as Zendesk writes it (`2026-12-03T10:00:00Z`).
fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn created(c: &TicketComment) -> Option<DateTime<Utc>> {
    c.created_at.as_deref().and_then(parse_time)
}

/// The top-level keys of the JSON bodies a trigger sends to webhooks (its body templates are
/// JSON with placeholders inside strings).
fn trigger_body_keys(actions: &[zendesk::TriggerAction]) -> Vec<String> {
    actions
        .iter()
        .filter(|a| a.field == "notification_webhook")
        .filter_map(|a| a.value.get(1).and_then(serde_json::Value::as_str))
        .filter_map(|body| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(body).ok()
        })
        .flat_map(|m| m.into_iter().map(|(k, _)| k))
        .collect()
}

/// Adds an internal note on `ticket` with `zendesk`; a failure is logged.
async fn note_on(zendesk: &ZendeskClient, ticket: TicketId, html: String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    if let Err(e) = zendesk
        .add_comment(
            zendesk::TicketId(ticket.get()),
            &Comment::internal_note(html),
            deadline,
        )
        .await
    {
        warn!(%ticket, error = %e, "cannot add the outbound note");
    }
}

/// What the connector puts at the foot of every comment it writes from a PEC.
const CONNECTOR_REFERENCE: &str = "Rif. connettore: pec:";

/// The outbox id of a dedup key: short and in the id alphabet whatever the key holds.
fn outbox_id(key: &str) -> OutboxId {
    OutboxId::parse(&format!(
        "send-{}",
        hex(&Sha256::digest(key.as_bytes())[..16])
    ))
    .expect("hex is a valid outbox id")
}

/// `Re: ` before a subject that has no reply prefix yet.
/// On one line, at most [`crate::outbound::webhook::MAX_SUBJECT_CHARS`] characters.
fn reply_subject(subject: &str) -> String {
    let s = crate::domain::one_line(subject, usize::MAX);
    let lower = s.to_ascii_lowercase();
    let s = if lower.starts_with("re:") || lower.starts_with("r:") {
        s
    } else if s.is_empty() {
        "Re: risposta".to_owned()
    } else {
        format!("Re: {s}")
    };
    crate::domain::one_line(&s, crate::outbound::webhook::MAX_SUBJECT_CHARS)
}

/// A trigger's `message` is HTML when it came from an HTML placeholder, text otherwise (ticket
/// placeholders render as plain text in webhook bodies).
fn message_html(message: &str) -> String {
    let looks_html = message.contains('<') && message.contains('>');
    if looks_html {
        message.to_owned()
    } else {
        zendesk::text_to_html(message)
    }
}

/// The wait after `attempts` tries: `backoff`, doubled for each try after the first, capped.
fn backoff_after(options: &SendOptions, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(20));
    options
        .backoff
        .saturating_mul(factor)
        .min(options.max_backoff)
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_get_one_prefix() {
        assert_eq!(reply_subject("Richiesta"), "Re: Richiesta");
        assert_eq!(reply_subject("RE: Richiesta"), "RE: Richiesta");
        assert_eq!(reply_subject("  "), "Re: risposta");
        assert_eq!(
            reply_subject("Richiesta\tdi accesso"),
            "Re: Richiesta di accesso"
        );
        let long = reply_subject(&"a".repeat(400));
        assert_eq!(long.chars().count(), 255);
    }

    #[test]
    fn outbox_ids_are_valid_for_any_key() {
        let a = outbox_id("template:a:1:invocation:x/y+z");
        let b = outbox_id("template:a:1:invocation:x/y+w");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("send-"));
    }

    #[test]
    fn text_messages_become_html_and_html_stays() {
        assert!(message_html("a < b").contains("&lt;"));
        assert_eq!(message_html("<p>ciao</p>"), "<p>ciao</p>");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let o = SendOptions::default();
        let backoff = |n: u32| backoff_after(&o, n);
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(240));
        assert_eq!(backoff(30), Duration::from_secs(3600));
    }

    fn comment(id: u64, author: u64, public: bool, html: &str) -> TicketComment {
        serde_json::from_value(serde_json::json!({
            "id": id, "author_id": author, "public": public, "html_body": html, "body": html
        }))
        .unwrap()
    }

    #[test]
    fn old_entries_pick_the_newest_public_comment_not_the_requesters() {
        let comments = vec![
            comment(5, 9, false, "nota"),
            comment(4, 2, true, "dal cittadino"),
            comment(
                3,
                9,
                true,
                "<p>x</p><p><small>Rif. connettore: pec:a:1:2</small></p>",
            ),
            comment(2, 9, true, "risposta"),
            comment(1, 9, true, "vecchia"),
        ];
        assert_eq!(pick_comment(&comments, Some(2)).map(|c| c.id), Some(2));
        assert_eq!(pick_comment(&comments[..1], Some(2)).map(|c| c.id), None);
    }

    #[test]
    fn trigger_bodies_tell_their_keys() {
        let actions = vec![
            zendesk::TriggerAction::notification_webhook("W", r#"{"account":"a","to":"{{x}}"}"#),
            zendesk::TriggerAction::new("remove_tags", "t"),
            zendesk::TriggerAction::notification_webhook("W", "not json"),
        ];
        let mut keys = trigger_body_keys(&actions);
        keys.sort();
        assert_eq!(keys, ["account", "to"]);
    }
}
