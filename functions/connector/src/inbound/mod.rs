//! Inbound: every new message in an account's PEC mailbox becomes the right Zendesk ticket,
//! comment or note, exactly once.
//!
//! One [`Inbound::poll`] of one account:
//!
//! 1. take the account's lease (a conditional write that also returns the cursor), so two
//!    overlapping runs never work the same mailbox;
//! 2. open the INBOX read-only; on first activation record the baseline (UIDVALIDITY, UIDNEXT)
//!    and import nothing that was already there;
//! 3. for each message above the cursor, in UID order and in batches: parse it, decide what it
//!    is ([`render`]), act in Zendesk, then record it — one atomic write of the message record
//!    and the cursor;
//! 4. stop before the deadline with the cursor at the last fully handled message.
//!
//! Exactly once, whatever fails: a message is recorded only after Zendesk has it, so a crash
//! means it is handled again; handling it again never doubles it, because every ticket carries
//! the message's marker as `external_id` (looked up before creating; creation also sends it as
//! `Idempotency-Key`) and every note or comment carries it in its text (looked up among the
//! ticket's latest comments before adding). A message whose Message-ID was already recorded
//! (a new UIDVALIDITY, a second copy) is recorded as a duplicate of the first.

pub mod render;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pec::{Kind, PecMessage, ReceiptKind, TrustAnchors};
use tracing::{info, warn};
use zendesk::{
    Comment, NewTicket, Requester, TicketUpdate, UploadToken, ZendeskClient, ZendeskError,
};

use crate::domain::{
    Account, AccountId, AccountProblem, Cursor, DeliveryState, Lease, LeaseHolder, LeaseOutcome,
    MessageId, MessageOutcome, MessageRecord, OutboundRecord, PecAddress, PollStats, ProblemKind,
    ReceiptMode, RecordOutcome, SendStatus, TicketId, Uid, UidValidity,
};
use crate::mailbox::{FetchedMessage, MailboxError, MailboxProvider, MailboxSession, MessageRef};
use crate::ports::{Secrets, Store};
use crate::secrets::SecretsError;
use crate::store::StoreError;
use crate::zendesks::ZendeskDirectory;
use render::{CommentDraft, TicketDraft, UploadFile};

/// Message ids of In-Reply-To / References looked up to thread a reply.
const MAX_THREAD_LOOKUPS: usize = 8;

/// Tuning of a poll.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// Most messages fetched in one IMAP round trip.
    pub batch_messages: usize,
    /// Most bytes fetched in one round trip (a larger single message is fetched alone).
    pub batch_bytes: u64,
    /// Time kept free before the deadline: no new message is started after it.
    pub margin: Duration,
    /// How long the lease outlives the deadline (a crashed run frees the mailbox after it).
    pub lease_slack: Duration,
    /// How long a mailbox may stay unreachable before the admins get an alert ticket (network
    /// blips heal by themselves; a refused login does not and is alerted at once).
    pub unreachable_grace: Duration,
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            batch_messages: 20,
            batch_bytes: 32 * 1024 * 1024,
            margin: Duration::from_secs(10),
            lease_slack: Duration::from_secs(30),
            unreachable_grace: Duration::from_secs(15 * 60),
        }
    }
}

/// A step boundary of the handling of one message, where tests inject crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    AfterFetch,
    AfterUploads,
    AfterTicketCreate,
    BeforeRecord,
    AfterRecord,
}

/// Called at every step boundary with the message's UID; an `Err` aborts the poll there, as a
/// crash would (tests only).
pub type StepHook = Arc<dyn Fn(Step, u32) -> Result<(), ()> + Send + Sync>;

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PollOutcome {
    /// Another run holds the mailbox: nothing was done.
    pub busy: bool,
    /// First activation: the baseline was recorded and nothing was imported.
    pub baseline: bool,
    pub tickets_created: u32,
    pub comments_added: u32,
    pub receipts_noted: u32,
    pub duplicates: u32,
    /// Messages that could not be parsed (each became a ticket with the raw message attached).
    pub unreadable: u32,
    /// New messages left for the next run (the deadline came first).
    pub remaining: u32,
}

/// The account's poll stats after a poll that ended with `result` at `now`: a success clears
/// the last error and adds to the totals, a failure records its error (never a secret).
fn poll_stats(
    before: &PollStats,
    result: &Result<PollOutcome, PollError>,
    now: DateTime<Utc>,
) -> PollStats {
    let mut stats = PollStats {
        last_poll_at: Some(now),
        ..before.clone()
    };
    match result {
        Ok(outcome) => {
            stats.last_success_at = Some(now);
            stats.last_error = None;
            stats.tickets_created += u64::from(outcome.tickets_created);
            stats.comments_added += u64::from(outcome.comments_added);
            stats.receipts_noted += u64::from(outcome.receipts_noted);
            stats.unreadable += u64::from(outcome.unreadable);
        }
        Err(e) => stats.last_error = Some(e.to_string()),
    }
    stats
}

/// Why a poll stopped early. Handled messages stay recorded; the next run continues.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("cannot poll account {0}: no such account")]
    AccountNotFound(String),
    #[error("cannot poll: {0}")]
    Store(#[from] StoreError),
    #[error("cannot poll: {0}")]
    Secrets(#[from] SecretsError),
    #[error("cannot read the mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    #[error("cannot write to Zendesk: {0}")]
    Zendesk(#[from] ZendeskError),
    #[error("zendesk returned an unusable ticket id {0}")]
    BadTicketId(u64),
    #[error("stopped at {0:?} of UID {1} (injected crash)")]
    Crash(Step, u32),
    #[error("cannot poll: {0}")]
    Instance(#[from] crate::zendesks::InstanceError),
}

impl PollError {
    /// Whether the mailbox itself (or its credentials) is the problem: recorded on the account
    /// and alerted by the poll, logged once per change of state.
    pub fn is_mailbox_problem(&self) -> bool {
        problem_of(self).is_some()
    }

    /// Whether the next scheduled run may succeed without anyone acting.
    pub fn is_transient(&self) -> bool {
        match self {
            PollError::Store(e) => e.is_transient(),
            PollError::Secrets(e) => e.is_transient(),
            PollError::Mailbox(e) => e.is_transient(),
            PollError::Zendesk(e) => e.is_transient(),
            PollError::Instance(e) => e.is_transient(),
            PollError::AccountNotFound(_) | PollError::BadTicketId(_) => false,
            PollError::Crash(..) => true,
        }
    }
}

/// The inbound use case and the ports it needs.
#[derive(Clone)]
pub struct Inbound {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub mailboxes: Arc<dyn MailboxProvider>,
    pub zendesk: Arc<ZendeskClient>,
    pub anchors: TrustAnchors,
    pub options: PollOptions,
    pub hook: Option<StepHook>,
    /// The deployment's other Zendesk instances; accounts naming one are polled into it
    /// (`zendesk` is the default instance's client).
    pub instances: Option<Arc<ZendeskDirectory>>,
}

/// What to do with one parsed message.
enum Action {
    NewTicket(TicketDraft),
    Comment(TicketId, CommentDraft, MessageOutcome),
    /// A receipt noted on the ticket of what we sent, and also given a ticket of its own.
    NoteAndTicket(TicketId, CommentDraft, TicketDraft),
}

impl Inbound {
    /// Polls one account until its mailbox is done or `deadline` is near.
    pub async fn poll(&self, id: &AccountId, deadline: Instant) -> Result<PollOutcome, PollError> {
        let holder = LeaseHolder::unique("poll");
        let ttl = deadline.saturating_duration_since(Instant::now()) + self.options.lease_slack;
        let lease = match self.store.take_lease(id, &holder, Utc::now(), ttl).await? {
            LeaseOutcome::Acquired(lease) => lease,
            LeaseOutcome::Held { holder, expires_at } => {
                info!(account = %id.as_str(), holder = %holder.as_str(), %expires_at, "mailbox busy: another run holds it");
                return Ok(PollOutcome {
                    busy: true,
                    ..PollOutcome::default()
                });
            }
        };
        let result = self.poll_leased(&lease, deadline).await;
        // The poll's stats go back with the lease: no extra write.
        let stats = poll_stats(&lease.stats, &result, Utc::now());
        if let Err(e) = self.store.release_lease_with(&lease, Some(&stats)).await {
            warn!(account = %id.as_str(), error = %e, "cannot release the lease; it expires by itself");
        }
        result
    }

    async fn poll_leased(
        &self,
        lease: &Lease,
        deadline: Instant,
    ) -> Result<PollOutcome, PollError> {
        let id = &lease.account;
        let account = self
            .store
            .get_account(id)
            .await?
            .ok_or_else(|| PollError::AccountNotFound(id.as_str().to_owned()))?;
        // An account of another Zendesk instance is polled into that instance.
        let scoped;
        let this = match &account.zendesk_instance {
            None => self,
            Some(instance) => {
                let directory = self.instances.as_ref().ok_or_else(|| {
                    crate::zendesks::InstanceError::Unknown(instance.as_str().to_owned())
                })?;
                scoped = Inbound {
                    zendesk: directory.client(instance).await?,
                    ..self.clone()
                };
                &scoped
            }
        };
        let result = this.poll_account(lease, &account, deadline).await;
        this.track_health(&account, &result, deadline).await;
        result
    }

    async fn poll_account(
        &self,
        lease: &Lease,
        account: &Account,
        deadline: Instant,
    ) -> Result<PollOutcome, PollError> {
        let password = self.secrets.get(&account.password_secret_name()).await?;
        let mailbox = self.mailboxes.mailbox(account, password);
        let mut session = mailbox.open().await?;
        let result = self
            .read_mailbox(lease, account, session.as_mut(), deadline)
            .await;
        session.close().await;
        result
    }

    /// Records mailbox trouble on the account, logs each change once, and alerts the admins
    /// with one Zendesk ticket per incident (at once for a refused login or TLS failure, after
    /// [`PollOptions::unreachable_grace`] for network trouble). Best effort: a failure here is
    /// logged and the next poll tries again.
    async fn track_health(
        &self,
        account: &Account,
        result: &Result<PollOutcome, PollError>,
        deadline: Instant,
    ) {
        let now = Utc::now();
        let current = account.health.problem.as_ref();
        let mut next = match result {
            Ok(_) => None,
            Err(e) => match problem_of(e) {
                Some((kind, message)) => Some(match current {
                    Some(p) if p.kind == kind => p.clone(),
                    _ => AccountProblem {
                        kind,
                        message,
                        since: now,
                        alert_ticket: None,
                    },
                }),
                // Not the mailbox's fault (Zendesk, the store): keep what is known.
                None => return,
            },
        };
        let grace = chrono::Duration::from_std(self.options.unreachable_grace).unwrap_or_default();
        if let Some(problem) = next.as_mut()
            && problem.alert_ticket.is_none()
            && (problem.kind != ProblemKind::Unreachable || now - problem.since >= grace)
        {
            match self.alert(account, problem, deadline).await {
                Ok(ticket) => problem.alert_ticket = Some(ticket),
                Err(e) => {
                    warn!(account = %account.id.as_str(), error = %e, "cannot open the alert ticket; the next poll tries again")
                }
            }
        }
        if next.as_ref() == current {
            return;
        }
        match (&next, current) {
            (Some(p), None) => {
                warn!(account = %account.id.as_str(), kind = ?p.kind, problem = %p.message, "mailbox problem")
            }
            (Some(p), Some(_)) => {
                info!(account = %account.id.as_str(), kind = ?p.kind, alert = ?p.alert_ticket, "mailbox problem updated")
            }
            (None, Some(p)) => {
                info!(account = %account.id.as_str(), since = %p.since, "mailbox readable again");
                if let Some(ticket) = p.alert_ticket {
                    let note = CommentDraft {
                        html_body: render::recovered_note(now),
                        ..CommentDraft::default()
                    };
                    if let Err(e) = self.put_comment(ticket, note, 0, deadline).await {
                        warn!(account = %account.id.as_str(), error = %e, "cannot note the recovery on the alert ticket");
                    }
                }
            }
            (None, None) => {}
        }
        let mut updated = account.clone();
        updated.health.problem = next;
        if let Err(e) = self.store.update_account(&updated).await {
            warn!(account = %account.id.as_str(), error = %e, "cannot record the mailbox health");
        }
    }

    /// Opens the alert ticket of an incident (idempotent: one per account and incident start).
    async fn alert(
        &self,
        account: &Account,
        problem: &AccountProblem,
        deadline: Instant,
    ) -> Result<TicketId, PollError> {
        let draft = render::alert_ticket(account, problem);
        let marker = format!(
            "pec-alert:{}:{}",
            account.id.as_str(),
            problem.since.timestamp()
        );
        self.create_ticket(draft, &marker, 0, deadline).await
    }

    async fn read_mailbox(
        &self,
        lease: &Lease,
        account: &Account,
        session: &mut dyn MailboxSession,
        deadline: Instant,
    ) -> Result<PollOutcome, PollError> {
        let mut outcome = PollOutcome::default();
        let status = session.status();
        let uid_validity = UidValidity::new(status.uid_validity).map_err(|e| {
            PollError::Mailbox(MailboxError::Server {
                server: account.imap.host.clone(),
                command: "EXAMINE INBOX",
                reason: format!("unusable UIDVALIDITY: {}", e.reason),
            })
        })?;
        let mut cursor = match lease.cursor {
            None => {
                let baseline = Cursor::first_activation(uid_validity, status.uid_next);
                self.store.advance_cursor(lease, None, &baseline).await?;
                info!(account = %account.id.as_str(), uid_next = status.uid_next, "first activation: baseline recorded, nothing imported");
                outcome.baseline = true;
                return Ok(outcome);
            }
            Some(c) if c.uid_validity != uid_validity => {
                // The server renumbered the mailbox: read it all again; what was already
                // imported is recognised by its Message-ID and recorded as a duplicate.
                warn!(account = %account.id.as_str(), old = c.uid_validity.get(), new = uid_validity.get(), "UIDVALIDITY changed: rereading the mailbox");
                let restart = Cursor {
                    uid_validity,
                    last_uid: 0,
                    baseline_uid_next: 0,
                };
                self.store.advance_cursor(lease, Some(&c), &restart).await?;
                restart
            }
            Some(c) => c,
        };

        let mut refs = session.list_above(cursor.last_uid).await?;
        if cursor.baseline_uid_next == 0 && cursor.last_uid == 0 {
            // Reading a renumbered mailbox again: what arrived before the account was activated
            // was never imported, and is not now (the server's arrival time tells).
            refs = self
                .skip_before_activation(lease, account, &mut cursor, refs)
                .await?;
        }
        let mut next = 0;
        while next < refs.len() {
            if Instant::now() + self.options.margin >= deadline {
                break;
            }
            let batch = self.next_batch(&refs[next..]);
            let uids: Vec<u32> = batch.iter().map(|r| r.uid).collect();
            next += batch.len();
            let messages = session.fetch(&uids).await?;
            for message in messages {
                if Instant::now() + self.options.margin >= deadline {
                    break;
                }
                self.step(Step::AfterFetch, message.uid)?;
                let (recorded, unreadable) = self
                    .handle(lease, account, uid_validity, &mut cursor, message, deadline)
                    .await?;
                if unreadable {
                    outcome.unreadable += 1;
                }
                match recorded {
                    MessageOutcome::TicketCreated => outcome.tickets_created += 1,
                    MessageOutcome::CommentAdded => outcome.comments_added += 1,
                    MessageOutcome::ReceiptNoted => outcome.receipts_noted += 1,
                    MessageOutcome::Duplicate => outcome.duplicates += 1,
                }
            }
        }
        outcome.remaining = refs.iter().filter(|r| r.uid > cursor.last_uid).count() as u32;
        Ok(outcome)
    }

    /// Moves the cursor over the leading messages that arrived before the account existed.
    async fn skip_before_activation(
        &self,
        lease: &Lease,
        account: &Account,
        cursor: &mut Cursor,
        refs: Vec<MessageRef>,
    ) -> Result<Vec<MessageRef>, PollError> {
        // INTERNALDATE has whole seconds: only what is a full second older is surely older.
        let activated = account.created_at - chrono::Duration::seconds(1);
        let old = refs
            .iter()
            .take_while(|r| r.arrived.is_some_and(|t| t < activated))
            .count();
        if old == 0 {
            return Ok(refs);
        }
        let last = Uid::new(refs[old - 1].uid).map_err(|e| {
            PollError::Mailbox(MailboxError::Server {
                server: account.imap.host.clone(),
                command: "UID FETCH",
                reason: e.reason,
            })
        })?;
        let next = cursor.advanced_to(last);
        self.store
            .advance_cursor(lease, Some(cursor), &next)
            .await?;
        *cursor = next;
        info!(account = %account.id.as_str(), skipped = old, "renumbered mailbox: messages older than the account skipped");
        Ok(refs[old..].to_vec())
    }

    /// The next batch: at most `batch_messages` and `batch_bytes`, at least one message.
    fn next_batch<'r>(&self, refs: &'r [MessageRef]) -> &'r [MessageRef] {
        let mut bytes = 0u64;
        let mut n = 0;
        for r in refs.iter().take(self.options.batch_messages.max(1)) {
            bytes += u64::from(r.size);
            if n > 0 && bytes > self.options.batch_bytes {
                break;
            }
            n += 1;
        }
        &refs[..n.max(1).min(refs.len())]
    }

    fn step(&self, step: Step, uid: u32) -> Result<(), PollError> {
        match &self.hook {
            Some(hook) => hook(step, uid).map_err(|()| PollError::Crash(step, uid)),
            None => Ok(()),
        }
    }

    /// Handles one message and records it (moving the cursor past it). Also says whether the
    /// message could not be parsed.
    async fn handle(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        message: FetchedMessage,
        deadline: Instant,
    ) -> Result<(MessageOutcome, bool), PollError> {
        let uid = Uid::new(message.uid).map_err(|e| {
            PollError::Mailbox(MailboxError::Server {
                server: account.imap.host.clone(),
                command: "UID FETCH",
                reason: e.reason,
            })
        })?;
        let marker = format!(
            "pec:{}:{}:{}",
            account.id.as_str(),
            uid_validity.get(),
            uid.get()
        );
        let raw = message.raw;
        let parsed = PecMessage::parse_with(&raw, &pec::Limits::default(), &self.anchors);
        let message_id = Some(dedup_key(parsed.as_ref().ok(), &raw));

        // A message already imported under another UID (a new UIDVALIDITY, a second copy).
        if let Some(mid) = &message_id
            && let Some(first) = self
                .store
                .find_message_by_message_id(&account.id, mid)
                .await?
        {
            info!(account = %account.id.as_str(), uid = uid.get(), ticket = first.ticket.get(), "already imported: recorded as a duplicate");
            return self
                .record(
                    lease,
                    cursor,
                    uid_validity,
                    uid,
                    message_id,
                    first.ticket,
                    MessageOutcome::Duplicate,
                )
                .await
                .map(|outcome| (outcome, false));
        }

        let unreadable = parsed.is_err();
        let action = match parsed {
            Ok(msg) => self.decide(account, msg, raw, &marker, deadline).await?,
            Err(e) => {
                warn!(account = %account.id.as_str(), uid = uid.get(), error = %e, "unreadable message: imported with the raw message attached");
                Action::NewTicket(render::unreadable_ticket(
                    raw,
                    &e.to_string(),
                    account.address.as_str(),
                    &marker,
                ))
            }
        };
        let (ticket, outcome) = match action {
            Action::NewTicket(draft) => {
                let ticket = self
                    .create_ticket(draft, &marker, uid.get(), deadline)
                    .await?;
                (ticket, MessageOutcome::TicketCreated)
            }
            Action::Comment(ticket, draft, outcome) => {
                self.add_comment(ticket, draft, &marker, uid.get(), deadline)
                    .await?;
                (ticket, outcome)
            }
            Action::NoteAndTicket(ticket, note, draft) => {
                self.add_comment(ticket, note, &marker, uid.get(), deadline)
                    .await?;
                self.create_ticket(draft, &marker, uid.get(), deadline)
                    .await?;
                (ticket, MessageOutcome::ReceiptNoted)
            }
        };
        self.step(Step::BeforeRecord, uid.get())?;
        let outcome = self
            .record(
                lease,
                cursor,
                uid_validity,
                uid,
                message_id,
                ticket,
                outcome,
            )
            .await?;
        self.step(Step::AfterRecord, uid.get())?;
        info!(account = %account.id.as_str(), uid = uid.get(), ticket = ticket.get(), ?outcome, "message handled");
        Ok((outcome, unreadable))
    }

    /// What a parsed message becomes: a receipt goes to the ticket of the PEC it certifies, a
    /// reply to the ticket of the PEC it answers, anything else opens a ticket.
    async fn decide(
        &self,
        account: &Account,
        msg: PecMessage,
        raw: Vec<u8>,
        marker: &str,
        deadline: Instant,
    ) -> Result<Action, PollError> {
        let mailbox = account.address.as_str();
        if let Kind::Receipt(kind) = msg.kind {
            let sent = match self.find_sent(account, &msg).await? {
                Some(sent) => sent,
                None => {
                    return Ok(Action::NewTicket(render::new_ticket(
                        msg, raw, mailbox, marker,
                    )));
                }
            };
            self.update_delivery(account, &sent, &msg, kind).await?;
            if account.receipt_mode != ReceiptMode::Ticket
                && !self.ticket_open(sent.ticket, deadline).await?
            {
                // Closed tickets refuse comments: the receipt gets a ticket of its own.
                let mut draft = render::receipt_ticket(&msg, raw, mailbox, marker, true);
                draft
                    .html_body
                    .push_str(&render::closed_ticket_line(sent.ticket.get()));
                return Ok(Action::NewTicket(draft));
            }
            return Ok(match account.receipt_mode {
                ReceiptMode::Note => Action::Comment(
                    sent.ticket,
                    render::receipt_note(&msg, raw, marker),
                    MessageOutcome::ReceiptNoted,
                ),
                ReceiptMode::Ticket => {
                    Action::NewTicket(render::receipt_ticket(&msg, raw, mailbox, marker, true))
                }
                ReceiptMode::Both => Action::NoteAndTicket(
                    sent.ticket,
                    render::receipt_note(&msg, raw.clone(), marker),
                    render::receipt_ticket(&msg, raw, mailbox, marker, true),
                ),
            });
        }
        if let Some(ticket) = self.answered_ticket(account, &msg).await? {
            let Some(open) = self.open_ticket(ticket, deadline).await? else {
                let mut draft = render::new_ticket(msg, raw, mailbox, marker);
                if let Some(note) = draft.note_html.as_mut() {
                    note.push_str(&render::closed_ticket_line(ticket.get()));
                }
                return Ok(Action::NewTicket(draft));
            };
            let sender = msg.sender();
            let mut draft = render::reply_comment(msg, raw, marker);
            // The citizen's reply is the citizen's comment, and it reopens the ticket, as
            // Zendesk's e-mail channel does.
            draft.author_id = self
                .requester_if_sender(&open, sender.as_deref(), deadline)
                .await?;
            if matches!(open.status.as_deref(), Some("solved" | "pending")) {
                draft.status = Some("open".to_owned());
            }
            return Ok(Action::Comment(ticket, draft, MessageOutcome::CommentAdded));
        }
        Ok(Action::NewTicket(render::new_ticket(
            msg, raw, mailbox, marker,
        )))
    }

    /// Whether a ticket still takes comments (Zendesk refuses them on closed or deleted tickets).
    async fn ticket_open(&self, ticket: TicketId, deadline: Instant) -> Result<bool, PollError> {
        Ok(self.open_ticket(ticket, deadline).await?.is_some())
    }

    /// The ticket, unless it is closed or deleted.
    async fn open_ticket(
        &self,
        ticket: TicketId,
        deadline: Instant,
    ) -> Result<Option<zendesk::Ticket>, PollError> {
        match self
            .zendesk
            .get_ticket(zendesk::TicketId(ticket.get()), deadline)
            .await
        {
            Ok(t) if t.status.as_deref() == Some("closed") => Ok(None),
            Ok(t) => Ok(Some(t)),
            Err(ZendeskError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The ticket's requester, when `sender` is the requester's address: the author of the
    /// reply. Someone else's reply (a CC, another office) stays the connector's comment, which
    /// names the real sender.
    async fn requester_if_sender(
        &self,
        ticket: &zendesk::Ticket,
        sender: Option<&str>,
        deadline: Instant,
    ) -> Result<Option<u64>, PollError> {
        let (Some(requester), Some(sender)) = (ticket.requester_id, sender) else {
            return Ok(None);
        };
        let user = match self.zendesk.get_user(requester, deadline).await {
            Ok(u) => u,
            Err(ZendeskError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let same = user
            .email
            .as_deref()
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(sender.trim()));
        Ok(same.then_some(requester))
    }

    /// The PEC we sent that a receipt is about: by our Message-ID (daticert `msgid`,
    /// `X-Riferimento-Message-ID`), else by the provider's identificativo.
    async fn find_sent(
        &self,
        account: &Account,
        msg: &PecMessage,
    ) -> Result<Option<OutboundRecord>, PollError> {
        let Some(facts) = msg.receipt() else {
            return Ok(None);
        };
        let candidates = [
            facts.msgid.map(str::to_owned),
            msg.riferimento_message_id
                .as_deref()
                .map(|m| pec::normalize_msgid(m).to_owned()),
            facts.identificativo.map(str::to_owned),
        ];
        for id in candidates.into_iter().flatten() {
            let Ok(id) = MessageId::parse(&id) else {
                continue;
            };
            if let Some(sent) = self.store.find_outbound(&account.id, &id).await? {
                return Ok(Some(sent));
            }
        }
        Ok(None)
    }

    /// Records what the receipt says about delivery, and learns the identificativo.
    async fn update_delivery(
        &self,
        account: &Account,
        sent: &OutboundRecord,
        msg: &PecMessage,
        kind: ReceiptKind,
    ) -> Result<(), PollError> {
        let facts = msg.receipt();
        if kind == ReceiptKind::Accettazione
            && sent.identificativo.is_none()
            && let Some(id) = facts
                .as_ref()
                .and_then(|f| f.identificativo)
                .and_then(|i| MessageId::parse(i).ok())
        {
            self.store
                .set_identificativo(&account.id, &sent.message_id, &id)
                .await?;
        }
        let state = match kind {
            ReceiptKind::Accettazione => DeliveryState::Accepted,
            ReceiptKind::AvvenutaConsegna => DeliveryState::Delivered,
            ReceiptKind::NonAccettazione => DeliveryState::NotAccepted,
            ReceiptKind::ErroreConsegna | ReceiptKind::RilevazioneVirus => {
                DeliveryState::NotDelivered
            }
            ReceiptKind::PreavvisoErroreConsegna => DeliveryState::Delayed,
            // The recipient's provider took it over: nothing final for any recipient yet.
            ReceiptKind::PresaInCarico => return Ok(()),
        };
        if state == DeliveryState::NotAccepted && sent.status != SendStatus::Failed {
            // The provider refused it after all: it was not sent.
            self.store
                .set_outbound_status(&account.id, &sent.message_id, SendStatus::Failed)
                .await?;
        }
        let named: Vec<PecAddress> = facts
            .map(|f| {
                f.consegna
                    .iter()
                    .filter_map(|c| PecAddress::parse(c).ok())
                    .collect()
            })
            .unwrap_or_default();
        // Per-recipient receipts name their recipient; the others are about every recipient.
        let recipients = if named.is_empty() {
            sent.recipients.clone()
        } else {
            named
        };
        for recipient in recipients {
            if !sent.recipients.contains(&recipient) {
                continue;
            }
            // Only forward: receipts can arrive late (an accettazione after the consegna).
            let now = sent
                .delivery
                .get(&recipient)
                .copied()
                .unwrap_or(DeliveryState::Pending);
            if state.rank() <= now.rank() {
                continue;
            }
            self.store
                .set_delivery(&account.id, &sent.message_id, &recipient, state)
                .await?;
        }
        Ok(())
    }

    /// The ticket a message answers: a PEC we sent (by our Message-ID or its identificativo) or
    /// an earlier inbound message, named in In-Reply-To / References.
    async fn answered_ticket(
        &self,
        account: &Account,
        msg: &PecMessage,
    ) -> Result<Option<TicketId>, PollError> {
        let Some(original) = &msg.original else {
            return Ok(None);
        };
        // The nearest ancestors first; a long References chain costs at most a few lookups.
        for id in original
            .in_reply_to
            .iter()
            .chain(original.references.iter().rev())
            .take(MAX_THREAD_LOOKUPS)
        {
            let Ok(id) = MessageId::parse(id) else {
                continue;
            };
            if let Some(sent) = self.store.find_outbound(&account.id, &id).await? {
                return Ok(Some(sent.ticket));
            }
            if let Some(earlier) = self
                .store
                .find_message_by_message_id(&account.id, &id)
                .await?
            {
                return Ok(Some(earlier.ticket));
            }
        }
        Ok(None)
    }

    async fn upload(
        &self,
        files: Vec<UploadFile>,
        deadline: Instant,
    ) -> Result<Vec<UploadToken>, PollError> {
        let mut token: Option<UploadToken> = None;
        for file in files {
            let t = self
                .zendesk
                .upload(
                    &file.filename,
                    &file.content_type,
                    file.data,
                    token.as_ref(),
                    deadline,
                )
                .await?;
            token = Some(t);
        }
        Ok(token.into_iter().collect())
    }

    /// Creates the ticket (or finds the one an interrupted run created) and its PEC-facts note.
    async fn create_ticket(
        &self,
        draft: TicketDraft,
        marker: &str,
        uid: u32,
        deadline: Instant,
    ) -> Result<TicketId, PollError> {
        let existing = self.zendesk.find_by_external_id(marker, deadline).await?;
        let resumed = existing.is_some();
        let ticket = match existing {
            Some(t) => t.id,
            None => {
                let uploads = self.upload(draft.files, deadline).await?;
                self.step(Step::AfterUploads, uid)?;
                let new = NewTicket {
                    subject: draft.subject,
                    requester: Requester {
                        email: draft.requester_email,
                        name: draft.requester_name,
                    },
                    comment: Comment {
                        html_body: draft.html_body,
                        public: draft.public,
                        uploads,
                        author_id: None,
                    },
                    external_id: Some(marker.to_owned()),
                    tags: draft.tags,
                    custom_fields: Vec::new(),
                };
                let t = self.zendesk.create_ticket(&new, marker, deadline).await?;
                self.step(Step::AfterTicketCreate, uid)?;
                t.id
            }
        };
        let ticket = TicketId::new(ticket.0).map_err(|_| PollError::BadTicketId(ticket.0))?;
        if let Some(note) = draft.note_html {
            let note = CommentDraft {
                html_body: note,
                ..CommentDraft::default()
            };
            if resumed {
                self.add_comment(ticket, note, marker, uid, deadline)
                    .await?;
            } else {
                // A ticket created just now has no note yet: no need to look.
                self.put_comment(ticket, note, uid, deadline).await?;
            }
        }
        Ok(ticket)
    }

    /// Adds a comment unless the ticket already carries this message's marker.
    async fn add_comment(
        &self,
        ticket: TicketId,
        draft: CommentDraft,
        marker: &str,
        uid: u32,
        deadline: Instant,
    ) -> Result<(), PollError> {
        let zticket = zendesk::TicketId(ticket.get());
        let recent = self.zendesk.latest_comments(zticket, 50, deadline).await?;
        let wanted_public = draft.public;
        if recent.iter().any(|c| {
            c.public == wanted_public && (c.html_body.contains(marker) || c.body.contains(marker))
        }) {
            return Ok(());
        }
        self.put_comment(ticket, draft, uid, deadline).await
    }

    async fn put_comment(
        &self,
        ticket: TicketId,
        draft: CommentDraft,
        uid: u32,
        deadline: Instant,
    ) -> Result<(), PollError> {
        let zticket = zendesk::TicketId(ticket.get());
        let uploads = self.upload(draft.files, deadline).await?;
        self.step(Step::AfterUploads, uid)?;
        let update = TicketUpdate {
            comment: Some(Comment {
                html_body: draft.html_body,
                public: draft.public,
                uploads,
                author_id: draft.author_id,
            }),
            additional_tags: draft.tags,
            remove_tags: Vec::new(),
            status: draft.status,
        };
        self.zendesk
            .update_ticket(zticket, &update, deadline)
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        lease: &Lease,
        cursor: &mut Cursor,
        uid_validity: UidValidity,
        uid: Uid,
        message_id: Option<MessageId>,
        ticket: TicketId,
        outcome: MessageOutcome,
    ) -> Result<MessageOutcome, PollError> {
        let record = MessageRecord {
            account: lease.account.clone(),
            uid_validity,
            uid,
            message_id,
            ticket,
            outcome,
            recorded_at: Utc::now(),
        };
        match self.store.record_message(lease, &record).await? {
            RecordOutcome::Recorded => {
                *cursor = cursor.advanced_to(uid);
                Ok(outcome)
            }
            RecordOutcome::AlreadyRecorded(first) => {
                // Recorded before (by UID or Message-ID): only the cursor has to move.
                let next = cursor.advanced_to(uid);
                if next.last_uid > cursor.last_uid {
                    self.store
                        .advance_cursor(lease, Some(cursor), &next)
                        .await?;
                    *cursor = next;
                }
                Ok(if first.uid == uid && first.uid_validity == uid_validity {
                    first.outcome
                } else {
                    MessageOutcome::Duplicate
                })
            }
        }
    }
}

/// The key that recognises the same message under another UID: its Message-ID (for a PEC
/// envelope, the provider's identificativo), else a digest of its bytes.
fn dedup_key(msg: Option<&PecMessage>, raw: &[u8]) -> MessageId {
    if let Some(id) = msg.and_then(|m| m.message_id.as_deref())
        && let Ok(id) = MessageId::parse(id)
    {
        return id;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(raw);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    MessageId::parse(&format!("sha256-{hex}@pec-connector.invalid"))
        .expect("a hex digest is a valid id")
}

/// The mailbox trouble an error shows, if it is the mailbox's (or its credentials').
fn problem_of(e: &PollError) -> Option<(ProblemKind, String)> {
    match e {
        PollError::Mailbox(m) => Some((
            match m {
                MailboxError::LoginRefused { .. } => ProblemKind::LoginRefused,
                MailboxError::Tls { .. } => ProblemKind::Tls,
                _ => ProblemKind::Unreachable,
            },
            m.to_string(),
        )),
        PollError::Secrets(s) if !s.is_transient() => {
            Some((ProblemKind::Credentials, s.to_string()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_stats_add_successes_and_keep_failures_apart() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(5);
        let t2 = t1 + chrono::Duration::minutes(5);
        let ok = PollOutcome {
            tickets_created: 2,
            comments_added: 1,
            receipts_noted: 3,
            unreadable: 1,
            duplicates: 7,
            ..PollOutcome::default()
        };
        let first = poll_stats(&PollStats::default(), &Ok(ok.clone()), t0);
        assert_eq!(
            first,
            PollStats {
                last_poll_at: Some(t0),
                last_success_at: Some(t0),
                last_error: None,
                tickets_created: 2,
                comments_added: 1,
                receipts_noted: 3,
                unreadable: 1,
            }
        );
        // A failure records its error and keeps the last success and the totals.
        let failed = poll_stats(
            &first,
            &Err(PollError::AccountNotFound("acme-1".into())),
            t1,
        );
        assert_eq!(failed.last_poll_at, Some(t1));
        assert_eq!(failed.last_success_at, Some(t0));
        assert_eq!(
            failed.last_error.as_deref(),
            Some("cannot poll account acme-1: no such account")
        );
        assert_eq!(failed.tickets_created, 2);
        // A success clears it and adds up.
        let again = poll_stats(&failed, &Ok(ok), t2);
        assert_eq!(again.last_poll_at, Some(t2));
        assert_eq!(again.last_success_at, Some(t2));
        assert_eq!(again.last_error, None);
        assert_eq!(
            (
                again.tickets_created,
                again.comments_added,
                again.receipts_noted,
                again.unreadable
            ),
            (4, 2, 6, 2)
        );
    }
}
