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

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use pec::{Kind, PecMessage, ReceiptKind, TrustAnchors};
use tracing::{info, warn};
use zendesk::{
    Comment, NewTicket, RateLeft, Requester, TicketUpdate, UploadToken, ZendeskClient, ZendeskError,
};

use crate::domain::{
    Account, AccountHealth, AccountId, AccountProblem, Cursor, DayActivity, DeliveryState,
    FailingMessage, InstanceId, Lease, LeaseHolder, LeaseOutcome, MessageId, MessageOutcome,
    MessageRecord, OutboundRecord, ParkedMessage, PecAddress, PollStats, ProblemKind,
    RateLimitStop, ReceiptMode, RecordOutcome, SendStatus, TicketId, TicketMarker, Uid,
    UidValidity, alert_external_id, parked_external_id, renumbered_external_id,
};
use crate::mailbox::{FetchedMessage, MailboxError, MailboxProvider, MailboxSession, MessageRef};
use crate::ports::{Secrets, Store};
use crate::render::{self, CommentDraft, TicketDraft, UploadFile};
use crate::secrets::SecretsError;
use crate::store::StoreError;
use crate::zendesks::ZendeskDirectory;

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
    /// Largest message fetched whole (accounts may set their own); a larger one becomes a
    /// ticket with its headers and stays in the mailbox. Default: a quarter of the function's
    /// memory (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), else 64 MiB.
    pub max_message_bytes: u64,
    /// Polls in a row a message may stop at with an error that is neither passing (429, 5xx,
    /// network) nor plainly permanent before it is parked (default 3).
    pub park_after: u32,
    /// How far back from the last successful poll a renumbered mailbox's messages are still
    /// imported (default 1 hour).
    pub renumbered_margin: Duration,
    /// Share of Zendesk's request limit, in percent, a poll leaves to the agents: no message is
    /// started when fewer would be left after it (default 20).
    pub agent_reserve_percent: u8,
    /// Zendesk requests one message is counted to need at most, for that check (default 6:
    /// a look-up, a few uploads, the ticket and its note).
    pub requests_per_message: u32,
}

/// A quarter of the Lambda function's memory, when running in one; else 64 MiB.
pub fn default_max_message_bytes() -> u64 {
    std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        .ok()
        .and_then(|mb| mb.trim().parse::<u64>().ok())
        .map(|mb| mb * 1024 * 1024 / 4)
        .unwrap_or(64 * 1024 * 1024)
}

impl Default for PollOptions {
    fn default() -> Self {
        PollOptions {
            batch_messages: 20,
            batch_bytes: 32 * 1024 * 1024,
            margin: Duration::from_secs(10),
            lease_slack: Duration::from_secs(30),
            unreachable_grace: Duration::from_secs(15 * 60),
            max_message_bytes: default_max_message_bytes(),
            park_after: 3,
            renumbered_margin: Duration::from_secs(60 * 60),
            agent_reserve_percent: 20,
            requests_per_message: 6,
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
    /// Of those, ricevute di accettazione of PEC we sent: PEC the provider took.
    pub accepted: u32,
    pub duplicates: u32,
    /// Messages that could not be parsed (each became a ticket with the raw message attached).
    pub unreadable: u32,
    /// Messages that could not be imported and were parked ("PEC non importabile").
    pub parked: u32,
    /// Messages over the size limit, imported with their headers only.
    pub too_large: u32,
    /// Messages the server listed but did not return (each parked).
    pub gaps: u32,
    /// Messages of a renumbered mailbox not imported again (older than the last good poll).
    pub skipped: u32,
    /// The last message parked by this poll.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_parked: Option<ParkedMessage>,
    /// New messages left for the next run (the deadline came first).
    pub remaining: u32,
    /// The mailbox was read to its end: everything that was there when the poll listed it is
    /// handled (what a held-back send waits for).
    pub caught_up: bool,
    /// The poll stopped early to leave [`PollOptions::agent_reserve_percent`] of Zendesk's
    /// request limit to the agents; `remaining` messages wait for the next poll. Not a failure.
    pub stopped_for_rate_limit: bool,
    /// Zendesk's requests left and limit when it stopped for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zendesk_requests_left: Option<RateLeft>,
}

/// The account's poll stats after a poll that did `outcome` (also when it stopped early) and
/// ended with `result` at `now`: the totals add up, a success clears the last error, a failure
/// records it (never a secret); a message that stopped the poll is remembered for parking.
fn poll_stats(
    before: &PollStats,
    outcome: &PollOutcome,
    result: &Result<(), PollError>,
    now: DateTime<Utc>,
) -> PollStats {
    let mut stats = PollStats {
        last_poll_at: Some(now),
        ..before.clone()
    };
    stats.tickets_created += u64::from(outcome.tickets_created);
    stats.comments_added += u64::from(outcome.comments_added);
    stats.receipts_noted += u64::from(outcome.receipts_noted);
    stats.unreadable += u64::from(outcome.unreadable);
    stats.parked += u64::from(outcome.parked);
    stats.too_large += u64::from(outcome.too_large);
    stats.gaps += u64::from(outcome.gaps);
    if let Some(p) = &outcome.last_parked {
        stats.last_parked = Some(p.clone());
    }
    stats.rate_limited = outcome.stopped_for_rate_limit.then(|| RateLimitStop {
        at: now,
        messages_left: outcome.remaining,
        requests_left: outcome.zendesk_requests_left.map(|l| l.remaining),
        request_limit: outcome.zendesk_requests_left.map(|l| l.limit),
    });
    stats.rate_limit_stops += u64::from(outcome.stopped_for_rate_limit);
    stats.add_activity(DayActivity {
        received: u64::from(outcome.tickets_created) + u64::from(outcome.comments_added),
        sent: u64::from(outcome.accepted),
        receipts: u64::from(outcome.receipts_noted),
        failures: u64::from(outcome.unreadable)
            + u64::from(outcome.parked)
            + u64::from(outcome.gaps)
            + u64::from(result.is_err()),
        ..DayActivity::empty(now.date_naive())
    });
    match result {
        Ok(()) => {
            stats.last_success_at = Some(now);
            stats.last_error = None;
            stats.failing = None;
        }
        Err(e) => {
            stats.last_error = Some(e.to_string());
            if let PollError::MessageFailed {
                uid_validity,
                uid,
                failures,
                source,
            } = e
            {
                stats.failing = Some(FailingMessage {
                    uid_validity: *uid_validity,
                    uid: *uid,
                    failures: *failures,
                    last_error: source.to_string(),
                });
            }
        }
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
    /// One message stopped the poll again; after a few polls in a row it is parked.
    #[error("message UID {uid} stopped the poll ({failures} in a row): {source}")]
    MessageFailed {
        uid_validity: u32,
        uid: u32,
        failures: u32,
        #[source]
        source: Box<PollError>,
    },
    /// The server listed a message but did not return it.
    #[error("the server did not return message UID {0}")]
    Gap(u32),
    /// A receipt's note, held to go out with the other receipts of its ticket, failed.
    #[error("receipt UID {uid}: {source}")]
    Deferred {
        uid: u32,
        #[source]
        source: Box<PollError>,
    },
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
            PollError::AccountNotFound(_) | PollError::BadTicketId(_) | PollError::Gap(_) => false,
            PollError::Crash(..) | PollError::MessageFailed { .. } => true,
            PollError::Deferred { source, .. } => source.is_transient(),
        }
    }

    /// Whether the error is about the message being handled (so parking it lets the mailbox go
    /// on), as opposed to Zendesk, the store or the mailbox as a whole (credentials, a limit,
    /// the network), which parking would not mend.
    fn is_about_the_message(&self) -> bool {
        match self {
            PollError::Zendesk(e) => {
                !e.is_transient()
                    && !matches!(
                        e,
                        ZendeskError::Unauthorized { .. }
                            | ZendeskError::Forbidden { .. }
                            | ZendeskError::Config(_)
                    )
            }
            PollError::BadTicketId(_) | PollError::Gap(_) => true,
            _ => false,
        }
    }

    /// Whether the message will fail the same way every time: Zendesk refused what was asked
    /// (a 4xx other than 429: a suspended requester, a field rule, a body it will not take).
    fn is_permanent_for_the_message(&self) -> bool {
        match self {
            PollError::Zendesk(e) => matches!(
                e,
                ZendeskError::Invalid { .. }
                    | ZendeskError::NotFound { .. }
                    | ZendeskError::CommentTooLarge { .. }
            ),
            PollError::BadTicketId(_) | PollError::Gap(_) => true,
            _ => false,
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

impl crate::zendesks::OnInstance for Inbound {
    fn zendesks(&self) -> (&Arc<ZendeskClient>, Option<&Arc<ZendeskDirectory>>) {
        (&self.zendesk, self.instances.as_ref())
    }

    fn with_client(&self, _: &InstanceId, zendesk: Arc<ZendeskClient>) -> Self {
        Inbound {
            zendesk,
            ..self.clone()
        }
    }
}

/// What to do with one parsed message.
enum Action {
    NewTicket(TicketDraft),
    Comment(TicketId, CommentDraft, MessageOutcome),
    /// A receipt noted on the ticket of what we sent, and also given a ticket of its own.
    NoteAndTicket(TicketId, CommentDraft, TicketDraft),
}

/// A receipt note held back to go out with the other receipts of its ticket found in the same
/// poll: one update per ticket instead of one per receipt (Zendesk takes 30 updates per ticket in
/// 10 minutes; a send to 50 recipients brings 51 receipts). Nothing is recorded until its note is
/// in Zendesk, and the cursor never passes a held receipt.
struct Held {
    uid: Uid,
    /// A ricevuta di accettazione (counted as a PEC sent once noted).
    acceptance: bool,
    marker: String,
    ticket: TicketId,
    note: CommentDraft,
    message_id: Option<MessageId>,
}

/// Largest combined receipt note (Zendesk truncates a comment over 64 kB) and most files on it.
const HELD_NOTE_BYTES: usize = 48 * 1024;
const HELD_NOTE_FILES: usize = 60;

/// The held receipts of one ticket as few notes as fit: each receipt's text in turn, its files
/// attached, every tag once.
fn combined_notes(group: &[&Held]) -> Vec<CommentDraft> {
    let mut notes: Vec<CommentDraft> = Vec::new();
    for h in group {
        let fits = notes.last().is_some_and(|n| {
            n.html_body.len() + h.note.html_body.len() <= HELD_NOTE_BYTES
                && n.files.len() + h.note.files.len() <= HELD_NOTE_FILES
        });
        if !fits {
            notes.push(CommentDraft::default());
        }
        let note = notes.last_mut().expect("a note was just added");
        note.html_body.push_str(&h.note.html_body);
        note.files.extend(h.note.files.iter().cloned());
        for tag in &h.note.tags {
            if !note.tags.contains(tag) {
                note.tags.push(tag.clone());
            }
        }
    }
    notes
}

/// One listed message, as the poll got it.
enum Source {
    Whole(FetchedMessage),
    /// Over the size limit: not fetched whole.
    TooLarge(MessageRef, u64),
    /// Listed, but the server did not return it.
    Gap(u32),
}

impl Source {
    fn uid(&self) -> u32 {
        match self {
            Source::Whole(m) => m.uid,
            Source::TooLarge(r, _) => r.uid,
            Source::Gap(uid) => *uid,
        }
    }

    fn size(&self) -> Option<u32> {
        match self {
            Source::Whole(m) => u32::try_from(m.raw.len()).ok(),
            Source::TooLarge(r, _) => Some(r.size),
            Source::Gap(_) => None,
        }
    }
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
        let mut outcome = PollOutcome::default();
        let result = self.poll_leased(&lease, deadline, &mut outcome).await;
        // The poll's stats go back with the lease: no extra write.
        let stats = poll_stats(&lease.stats, &outcome, &result, Utc::now());
        if let Err(e) = self.store.release_lease_with(&lease, Some(&stats)).await {
            warn!(account = %id.as_str(), error = %e, "cannot release the lease; it expires by itself");
        }
        result.map(|()| outcome)
    }

    async fn poll_leased(
        &self,
        lease: &Lease,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
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
                scoped = crate::zendesks::on_instance(self, instance).await?;
                &scoped
            }
        };
        let result = this.poll_account(lease, &account, deadline, outcome).await;
        this.track_health(&account, &result, deadline).await;
        result
    }

    async fn poll_account(
        &self,
        lease: &Lease,
        account: &Account,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
        let password = self
            .secrets
            .get_current(&account.password_secret_name(), account.password_set_at)
            .await?;
        let mailbox = self.mailboxes.mailbox(account, password);
        let mut session = self.in_time(deadline, "LOGIN", mailbox.open()).await?;
        let result = self
            .read_mailbox(lease, account, session.as_mut(), deadline, outcome)
            .await;
        session.close().await;
        result
    }

    /// `io` (an IMAP exchange), given up when the lease is about to run out: a stuck fetch must
    /// not outlive the lease, or another run could work the mailbox meanwhile.
    async fn in_time<T>(
        &self,
        deadline: Instant,
        command: &'static str,
        io: impl std::future::Future<Output = Result<T, MailboxError>>,
    ) -> Result<T, MailboxError> {
        let limit =
            (deadline + self.options.lease_slack / 2).saturating_duration_since(Instant::now());
        match tokio::time::timeout(limit, io).await {
            Ok(result) => result,
            Err(_) => Err(MailboxError::Io {
                server: "the mailbox".to_owned(),
                command,
                reason: format!(
                    "no answer within {} s, before the poll's lease runs out",
                    limit.as_secs()
                ),
            }),
        }
    }

    /// Records mailbox trouble on the account, logs each change once, and alerts the admins
    /// with one Zendesk ticket per incident (at once for a refused login or TLS failure, after
    /// [`PollOptions::unreachable_grace`] for network trouble). Best effort: a failure here is
    /// logged and the next poll tries again.
    async fn track_health(
        &self,
        account: &Account,
        result: &Result<(), PollError>,
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
        // Only the health is written: an admin's change made during the poll stays.
        let health = AccountHealth { problem: next };
        if let Err(e) = self.store.set_account_health(&account.id, &health).await {
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
        let marker = alert_external_id(&account.id, problem.since);
        self.create_ticket(account, draft, &marker, 0, deadline)
            .await
    }

    async fn read_mailbox(
        &self,
        lease: &Lease,
        account: &Account,
        session: &mut dyn MailboxSession,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
        let status = session.status();
        let uid_validity = UidValidity::new(status.uid_validity).map_err(|e| {
            PollError::Mailbox(MailboxError::Server {
                server: account.imap.host.clone(),
                command: "EXAMINE INBOX",
                reason: format!("unusable UIDVALIDITY: {}", e.reason),
            })
        })?;
        let mut skip = Vec::new();
        let mut cursor = match lease.cursor {
            None => {
                let baseline = Cursor::first_activation(uid_validity, status.uid_next);
                self.store.advance_cursor(lease, None, &baseline).await?;
                info!(account = %account.id.as_str(), uid_next = status.uid_next, "first activation: baseline recorded, nothing imported");
                outcome.baseline = true;
                outcome.caught_up = true;
                return Ok(());
            }
            Some(c) if c.uid_validity != uid_validity => {
                let (cursor, later_old) = self
                    .renumbered(lease, account, session, c, uid_validity, deadline, outcome)
                    .await?;
                skip = later_old;
                cursor
            }
            Some(c) => c,
        };

        let after = cursor.last_uid;
        let refs = self
            .in_time(deadline, "UID FETCH", session.list_above(after))
            .await?;
        let limit = account
            .max_message_bytes
            .unwrap_or(self.options.max_message_bytes);
        let mut next = 0;
        let mut held = Vec::new();
        'batches: while next < refs.len() {
            if Instant::now() + self.options.margin >= deadline || self.out_of_budget(outcome) {
                break;
            }
            let batch = self.next_batch(&refs[next..], limit);
            next += batch.len();
            let wanted: Vec<u32> = batch
                .iter()
                .filter(|r| u64::from(r.size) <= limit)
                .map(|r| r.uid)
                .collect();
            let mut fetched = self.fetch_batch(session, &wanted, deadline).await?;
            for r in batch {
                if Instant::now() + self.options.margin >= deadline || self.out_of_budget(outcome) {
                    break 'batches;
                }
                let source = if u64::from(r.size) > limit {
                    Source::TooLarge(*r, limit)
                } else {
                    match fetched.iter().position(|m| m.uid == r.uid) {
                        Some(at) => Source::Whole(fetched.swap_remove(at)),
                        // Not in the batch's answer: asked for again on its own.
                        None => match self.fetch_batch(session, &[r.uid], deadline).await?.pop() {
                            Some(m) => Source::Whole(m),
                            None => {
                                warn!(account = %account.id.as_str(), uid = r.uid, "the server listed a message it does not return");
                                Source::Gap(r.uid)
                            }
                        },
                    }
                };
                self.step(Step::AfterFetch, r.uid)?;
                let skipped = skip.contains(&r.uid);
                self.take(
                    lease,
                    account,
                    uid_validity,
                    &mut cursor,
                    session,
                    source,
                    skipped,
                    &mut held,
                    deadline,
                    outcome,
                )
                .await?;
            }
        }
        self.flush(
            lease,
            account,
            uid_validity,
            &mut cursor,
            &mut held,
            deadline,
            outcome,
        )
        .await
        .map_err(|e| self.failed(lease, uid_validity, e))?;
        outcome.remaining = refs.iter().filter(|r| r.uid > cursor.last_uid).count() as u32;
        outcome.caught_up = outcome.remaining == 0 && !outcome.stopped_for_rate_limit;
        if outcome.stopped_for_rate_limit {
            info!(account = %account.id.as_str(), remaining = outcome.remaining, left = ?outcome.zendesk_requests_left, "zendesk's request limit nearly reached: the rest is left for the next poll, for the agents");
        }
        Ok(())
    }

    /// Whether another message would leave the agents less than their share of Zendesk's
    /// request limit (an unknown budget never stops a poll); says so in `outcome`.
    fn out_of_budget(&self, outcome: &mut PollOutcome) -> bool {
        let budget = self.zendesk.budget();
        let (needed, reserve) = (
            self.options.requests_per_message,
            self.options.agent_reserve_percent,
        );
        if budget.allows(needed, reserve) {
            return false;
        }
        outcome.stopped_for_rate_limit = true;
        outcome.zendesk_requests_left = budget.left();
        true
    }

    /// Fetches `uids` (in time); a batch the server refuses (`NO`) is fetched one by one, and a
    /// message it refuses alone is left out (the caller sees it missing).
    async fn fetch_batch(
        &self,
        session: &mut dyn MailboxSession,
        uids: &[u32],
        deadline: Instant,
    ) -> Result<Vec<FetchedMessage>, PollError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .in_time(deadline, "UID FETCH", session.fetch(uids))
            .await
        {
            Ok(messages) => Ok(messages),
            Err(MailboxError::Server { reason, .. }) => {
                warn!(uids = ?uids, %reason, "the server refused a fetch: asking for each message alone");
                let mut out = Vec::new();
                for uid in uids {
                    match self
                        .in_time(deadline, "UID FETCH", session.fetch(&[*uid]))
                        .await
                    {
                        Ok(m) => out.extend(m),
                        Err(MailboxError::Server { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(out)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Handles one message (or parks it), counting what became of it. A message that fails is
    /// parked at once when the failure is its own and permanent, after
    /// [`PollOptions::park_after`] polls in a row when it is its own but unclear; a passing
    /// failure (429, 5xx, network), or one of Zendesk, the store or the mailbox as a whole, stops
    /// the poll and never parks it.
    #[allow(clippy::too_many_arguments)]
    async fn take(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        session: &mut dyn MailboxSession,
        source: Source,
        skipped: bool,
        held: &mut Vec<Held>,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
        let uid = source.uid();
        let size = source.size();
        let too_large = matches!(source, Source::TooLarge(..));
        if skipped || !matches!(source, Source::Whole(_)) {
            // Whatever is recorded next moves the cursor: the held receipts go first.
            self.flush(
                lease,
                account,
                uid_validity,
                cursor,
                held,
                deadline,
                outcome,
            )
            .await
            .map_err(|e| self.failed(lease, uid_validity, e))?;
        }
        let result = match source {
            Source::Whole(message) if skipped => self
                .skip_renumbered(lease, account, uid_validity, cursor, message)
                .await
                .map(|o| Some((o, false))),
            Source::Whole(message) => {
                self.handle(
                    lease,
                    account,
                    uid_validity,
                    cursor,
                    message,
                    held,
                    deadline,
                    outcome,
                )
                .await
            }
            Source::TooLarge(r, limit) => self
                .too_large(
                    lease,
                    account,
                    uid_validity,
                    cursor,
                    session,
                    r,
                    limit,
                    deadline,
                )
                .await
                .map(|o| Some((o, false))),
            Source::Gap(uid) => Err(PollError::Gap(uid)),
        };
        let err = match result {
            // Held with the other receipts of its ticket: counted when noted.
            Ok(None) => return Ok(()),
            Ok(Some((recorded, unreadable))) => {
                if unreadable {
                    outcome.unreadable += 1;
                }
                if too_large && recorded == MessageOutcome::TicketCreated {
                    outcome.too_large += 1;
                }
                match recorded {
                    MessageOutcome::TicketCreated => outcome.tickets_created += 1,
                    MessageOutcome::CommentAdded => outcome.comments_added += 1,
                    MessageOutcome::ReceiptNoted => outcome.receipts_noted += 1,
                    MessageOutcome::Duplicate => outcome.duplicates += 1,
                    MessageOutcome::Parked => outcome.parked += 1,
                    MessageOutcome::Skipped => outcome.skipped += 1,
                }
                return Ok(());
            }
            Err(e) => e,
        };
        if matches!(err, PollError::Deferred { .. }) || !err.is_about_the_message() {
            return Err(self.failed(lease, uid_validity, err));
        }
        // Parking records this message: the held receipts before it go first.
        self.flush(
            lease,
            account,
            uid_validity,
            cursor,
            held,
            deadline,
            outcome,
        )
        .await
        .map_err(|e| self.failed(lease, uid_validity, e))?;
        let failures = match &lease.stats.failing {
            Some(f) if f.uid_validity == uid_validity.get() && f.uid == uid => f.failures + 1,
            _ => 1,
        };
        if !err.is_permanent_for_the_message() && failures < self.options.park_after {
            warn!(account = %account.id.as_str(), uid, failures, error = %err, "message failed: tried again at the next poll, then parked");
            return Err(PollError::MessageFailed {
                uid_validity: uid_validity.get(),
                uid,
                failures,
                source: Box::new(err),
            });
        }
        if matches!(err, PollError::Gap(_)) {
            outcome.gaps += 1;
        }
        self.park(
            lease,
            account,
            uid_validity,
            cursor,
            session,
            uid,
            size,
            &err,
            deadline,
            outcome,
        )
        .await
    }

    /// Parks message `uid`: a ticket "PEC non importabile" with the raw message (read again) and
    /// the reason, or when even that cannot be made, an alert ticket naming its UID; then the
    /// cursor moves past it. Nothing is lost: the PEC stays in the mailbox too.
    #[allow(clippy::too_many_arguments)]
    async fn park(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        session: &mut dyn MailboxSession,
        uid: u32,
        size: Option<u32>,
        why: &PollError,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
        let uid_ = Uid::new(uid).map_err(|_| PollError::Gap(uid))?;
        let limit = account
            .max_message_bytes
            .unwrap_or(self.options.max_message_bytes);
        let raw = if matches!(why, PollError::Gap(_)) || size.is_some_and(|s| u64::from(s) > limit)
        {
            None
        } else {
            self.fetch_batch(session, &[uid], deadline)
                .await?
                .pop()
                .map(|m| m.raw)
        };
        let reason = reason_of(why);
        warn!(account = %account.id.as_str(), uid, reason = %reason, "message parked");
        let marker = TicketMarker::of(account, uid_validity, uid_).to_string();
        let message_id = raw.as_deref().map(|r| {
            let parsed = PecMessage::parse_with(r, &pec::Limits::default(), &self.anchors).ok();
            dedup_key(parsed.as_ref(), r)
        });
        let draft = render::parked_ticket(raw, &reason, uid, account.address.as_str(), &marker);
        let ticket = match self
            .create_ticket(account, draft, &marker, uid, deadline)
            .await
        {
            Ok(t) => t,
            Err(e) if !e.is_about_the_message() => return Err(e),
            Err(e) => {
                warn!(account = %account.id.as_str(), uid, error = %e, "cannot open the parked message's ticket: an alert names it");
                let draft = render::parked_alert(account, uid, &reason, &e.to_string());
                self.create_ticket(account, draft, &parked_external_id(&marker), uid, deadline)
                    .await?
            }
        };
        self.record(
            lease,
            cursor,
            uid_validity,
            uid_,
            message_id,
            ticket,
            MessageOutcome::Parked,
        )
        .await?;
        outcome.parked += 1;
        outcome.last_parked = Some(ParkedMessage {
            uid_validity: uid_validity.get(),
            uid,
            ticket: Some(ticket.get()),
            reason,
            at: Utc::now(),
        });
        Ok(())
    }

    /// A message over the size limit: a ticket with its headers and the explanation (the PEC
    /// stays in the mailbox), never the whole message in memory.
    #[allow(clippy::too_many_arguments)]
    async fn too_large(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        session: &mut dyn MailboxSession,
        r: MessageRef,
        limit: u64,
        deadline: Instant,
    ) -> Result<MessageOutcome, PollError> {
        let uid = Uid::new(r.uid).map_err(|_| PollError::Gap(r.uid))?;
        let header = self
            .in_time(
                deadline,
                "UID FETCH BODY.PEEK[HEADER]",
                session.fetch_header(r.uid),
            )
            .await?
            .ok_or(PollError::Gap(r.uid))?;
        let marker = TicketMarker::of(account, uid_validity, uid).to_string();
        let message_id = render::header_value(&header, "Message-ID")
            .and_then(|m| MessageId::parse(pec::normalize_msgid(&m)).ok());
        if let Some(mid) = &message_id
            && let Some(first) = self
                .store
                .find_message_by_message_id(&account.id, mid)
                .await?
        {
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
                .await;
        }
        let draft = render::too_large_ticket(
            &header,
            u64::from(r.size),
            limit,
            account.address.as_str(),
            &marker,
        );
        let ticket = self
            .create_ticket(account, draft, &marker, r.uid, deadline)
            .await?;
        info!(account = %account.id.as_str(), uid = r.uid, size = r.size, limit, ticket = ticket.get(), "message over the size limit: imported with its headers");
        self.record(
            lease,
            cursor,
            uid_validity,
            uid,
            message_id,
            ticket,
            MessageOutcome::TicketCreated,
        )
        .await
    }

    /// The mailbox was renumbered (a new UIDVALIDITY): its messages are read again, but only
    /// those newer than the last successful poll (minus a margin) are imported, and those not
    /// already recorded (by Message-ID or content); the rest are skipped — the leading run by
    /// moving the cursor past it, any later one by recording it as skipped — and one alert ticket
    /// says what happened and lists them. Returns the new cursor and the later old UIDs.
    #[allow(clippy::too_many_arguments)]
    async fn renumbered(
        &self,
        lease: &Lease,
        account: &Account,
        session: &mut dyn MailboxSession,
        old: Cursor,
        uid_validity: UidValidity,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(Cursor, Vec<u32>), PollError> {
        warn!(account = %account.id.as_str(), old = old.uid_validity.get(), new = uid_validity.get(), "UIDVALIDITY changed: the mailbox was renumbered");
        let refs = self
            .in_time(deadline, "UID FETCH", session.list_above(0))
            .await?;
        let margin = chrono::Duration::from_std(self.options.renumbered_margin).unwrap_or_default();
        let cutoff = lease
            .stats
            .last_success_at
            .map(|t| t - margin)
            .unwrap_or(account.created_at)
            .max(account.created_at - chrono::Duration::seconds(1));
        let old_refs: Vec<MessageRef> = refs
            .iter()
            .filter(|r| r.arrived.is_some_and(|t| t < cutoff))
            .copied()
            .collect();
        let leading = refs
            .iter()
            .take_while(|r| r.arrived.is_some_and(|t| t < cutoff))
            .count();
        let mut listed = Vec::new();
        for r in old_refs.iter().take(render::LIST_CAP) {
            let header = self
                .in_time(
                    deadline,
                    "UID FETCH BODY.PEEK[HEADER]",
                    session.fetch_header(r.uid),
                )
                .await?
                .unwrap_or_default();
            listed.push((r.uid, r.arrived, header));
        }
        let draft = render::renumbered_alert(
            account,
            old.uid_validity.get(),
            uid_validity.get(),
            cutoff,
            refs.len(),
            old_refs.len(),
            &listed,
        );
        let marker = renumbered_external_id(&account.id, uid_validity);
        self.create_ticket(account, draft, &marker, 0, deadline)
            .await?;
        let restart = Cursor {
            uid_validity,
            last_uid: if leading == 0 {
                0
            } else {
                refs[leading - 1].uid
            },
            baseline_uid_next: 0,
        };
        self.store
            .advance_cursor(lease, Some(&old), &restart)
            .await?;
        outcome.skipped += leading as u32;
        info!(account = %account.id.as_str(), skipped = old_refs.len(), total = refs.len(), "renumbered mailbox: older messages skipped, newer ones read again");
        let later: Vec<u32> = old_refs[leading..].iter().map(|r| r.uid).collect();
        Ok((restart, later))
    }

    /// Records a message of a renumbered mailbox that is older than the last good poll: not
    /// imported again (its copy, if any, was; the alert lists it).
    async fn skip_renumbered(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        message: FetchedMessage,
    ) -> Result<MessageOutcome, PollError> {
        let uid = Uid::new(message.uid).map_err(|_| PollError::Gap(message.uid))?;
        let parsed = PecMessage::parse_with(&message.raw, &pec::Limits::default(), &self.anchors);
        let key = dedup_key(parsed.as_ref().ok(), &message.raw);
        let ticket = match self
            .store
            .find_message_by_message_id(&account.id, &key)
            .await?
        {
            Some(first) => first.ticket,
            None => {
                let marker = renumbered_external_id(&account.id, uid_validity);
                let deadline = Instant::now() + Duration::from_secs(10);
                match self.zendesk.find_by_external_id(&marker, deadline).await? {
                    Some(t) => TicketId::new(t.id.0).map_err(|_| PollError::BadTicketId(t.id.0))?,
                    None => return Err(PollError::Gap(message.uid)),
                }
            }
        };
        self.record(
            lease,
            cursor,
            uid_validity,
            uid,
            Some(key),
            ticket,
            MessageOutcome::Skipped,
        )
        .await
    }

    /// The next batch: at most `batch_messages` and `batch_bytes`, at least one message;
    /// messages over `limit` are not fetched whole, so they weigh nothing.
    fn next_batch<'r>(&self, refs: &'r [MessageRef], limit: u64) -> &'r [MessageRef] {
        let mut bytes = 0u64;
        let mut n = 0;
        for r in refs.iter().take(self.options.batch_messages.max(1)) {
            if u64::from(r.size) <= limit {
                bytes += u64::from(r.size);
            }
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

    /// Handles one message and records it (moving the cursor past it), or holds it when it is a
    /// receipt to note with the others of its ticket (`None`). Also says whether the message
    /// could not be parsed.
    #[allow(clippy::too_many_arguments)]
    async fn handle(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        message: FetchedMessage,
        held: &mut Vec<Held>,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<Option<(MessageOutcome, bool)>, PollError> {
        let uid = Uid::new(message.uid).map_err(|e| {
            PollError::Mailbox(MailboxError::Server {
                server: account.imap.host.clone(),
                command: "UID FETCH",
                reason: e.reason,
            })
        })?;
        let marker = TicketMarker::of(account, uid_validity, uid).to_string();
        let raw = message.raw;
        let parsed = PecMessage::parse_with(&raw, &pec::Limits::default(), &self.anchors);
        let message_id = Some(dedup_key(parsed.as_ref().ok(), &raw));
        let acceptance = matches!(
            &parsed,
            Ok(m) if matches!(m.kind, Kind::Receipt(ReceiptKind::Accettazione))
        );

        // A message already imported under another UID (a new UIDVALIDITY, a second copy).
        if let Some(mid) = &message_id
            && let Some(first) = self
                .store
                .find_message_by_message_id(&account.id, mid)
                .await?
        {
            info!(account = %account.id.as_str(), uid = uid.get(), ticket = first.ticket.get(), "already imported: recorded as a duplicate");
            self.flush(
                lease,
                account,
                uid_validity,
                cursor,
                held,
                deadline,
                outcome,
            )
            .await?;
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
                .map(|outcome| Some((outcome, false)));
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
        // A receipt for a ticket is held, to be noted with the others of its ticket; unless it
        // failed before (it then goes alone, so a failure is its own and it can be parked).
        let failed_before = lease
            .stats
            .failing
            .as_ref()
            .is_some_and(|f| f.uid_validity == uid_validity.get() && f.uid == uid.get());
        let action = match action {
            Action::Comment(ticket, note, MessageOutcome::ReceiptNoted) if !failed_before => {
                held.push(Held {
                    uid,
                    acceptance,
                    marker,
                    ticket,
                    note,
                    message_id,
                });
                return Ok(None);
            }
            other => other,
        };
        // This message is recorded next, which moves the cursor: the held receipts go first.
        self.flush(
            lease,
            account,
            uid_validity,
            cursor,
            held,
            deadline,
            outcome,
        )
        .await?;
        let poll = outcome;
        let (ticket, outcome) = match action {
            Action::NewTicket(draft) => {
                let ticket = self
                    .create_ticket(account, draft, &marker, uid.get(), deadline)
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
                self.create_ticket(account, draft, &marker, uid.get(), deadline)
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
        if acceptance && outcome == MessageOutcome::ReceiptNoted {
            poll.accepted += 1;
        }
        Ok(Some((outcome, unreadable)))
    }

    /// Notes the held receipts, as few updates per ticket as fit (each receipt's text and file),
    /// then records them in UID order. When Zendesk refuses a combined note, every receipt goes
    /// alone; the first that fails stops the poll ([`PollError::Deferred`]) with every receipt
    /// before it recorded and none after.
    #[allow(clippy::too_many_arguments)]
    async fn flush(
        &self,
        lease: &Lease,
        account: &Account,
        uid_validity: UidValidity,
        cursor: &mut Cursor,
        held: &mut Vec<Held>,
        deadline: Instant,
        outcome: &mut PollOutcome,
    ) -> Result<(), PollError> {
        if held.is_empty() {
            return Ok(());
        }
        let mut items = std::mem::take(held);
        items.sort_by_key(|h| h.uid);
        let mut tickets: Vec<TicketId> = Vec::new();
        for h in &items {
            if !tickets.contains(&h.ticket) {
                tickets.push(h.ticket);
            }
        }
        let mut one_by_one = false;
        'tickets: for ticket in tickets {
            let recent = self
                .zendesk
                .latest_comments(zendesk::TicketId(ticket.get()), 50, deadline)
                .await?;
            // Those an interrupted run already noted carry their marker.
            let todo: Vec<&Held> = items
                .iter()
                .filter(|h| h.ticket == ticket)
                .filter(|h| {
                    !recent.iter().any(|c| {
                        !c.public && (c.html_body.contains(&h.marker) || c.body.contains(&h.marker))
                    })
                })
                .collect();
            for note in combined_notes(&todo) {
                match self
                    .put_comment(ticket, note, todo[0].uid.get(), deadline)
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.is_about_the_message() => {
                        warn!(account = %account.id.as_str(), ticket = ticket.get(), error = %e, "a combined receipt note was refused: noting the receipts one by one");
                        one_by_one = true;
                        break 'tickets;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for h in items {
            let acceptance = h.acceptance;
            if one_by_one
                && let Err(e) = self
                    .add_comment(h.ticket, h.note, &h.marker, h.uid.get(), deadline)
                    .await
            {
                return Err(if e.is_about_the_message() {
                    PollError::Deferred {
                        uid: h.uid.get(),
                        source: Box::new(e),
                    }
                } else {
                    e
                });
            }
            let recorded = self
                .record(
                    lease,
                    cursor,
                    uid_validity,
                    h.uid,
                    h.message_id,
                    h.ticket,
                    MessageOutcome::ReceiptNoted,
                )
                .await?;
            match recorded {
                MessageOutcome::ReceiptNoted => {
                    outcome.receipts_noted += 1;
                    outcome.accepted += u32::from(acceptance);
                }
                _ => outcome.duplicates += 1,
            }
        }
        Ok(())
    }

    /// A held receipt's failure as the failure of that message (so it is retried, then parked
    /// at a poll where it goes alone); any other error as it is.
    fn failed(&self, lease: &Lease, uid_validity: UidValidity, err: PollError) -> PollError {
        let PollError::Deferred { uid, source } = err else {
            return err;
        };
        let failures = match &lease.stats.failing {
            Some(f) if f.uid_validity == uid_validity.get() && f.uid == uid => f.failures + 1,
            _ => 1,
        };
        warn!(uid, failures, error = %source, "a held receipt failed: tried again alone at the next poll");
        PollError::MessageFailed {
            uid_validity: uid_validity.get(),
            uid,
            failures,
            source,
        }
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
            if msg.signature.verdict == pec::Verdict::Invalid {
                // Noted and flagged, but no delivery state moves on an altered receipt.
                warn!(account = %account.id.as_str(), reason = ?msg.signature.reason, "receipt with an invalid signature: delivery state left as it was");
            } else {
                self.update_delivery(account, &sent, &msg, kind).await?;
            }
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
                    draft.note_essential = true;
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

    /// Creates the ticket (or finds the one an interrupted run created), in one request: its
    /// files, tags and the PEC facts in the account's ticket fields. The facts note follows as
    /// an update only when the fields are not provisioned or the note says more than the facts.
    /// Zendesk is searched by `external_id` only when an earlier attempt was noted in the store.
    async fn create_ticket(
        &self,
        account: &Account,
        draft: TicketDraft,
        marker: &str,
        uid: u32,
        deadline: Instant,
    ) -> Result<TicketId, PollError> {
        let first_attempt = self.store.note_ticket_attempt(&account.id, marker).await?;
        let existing = if first_attempt {
            None
        } else {
            self.zendesk.find_by_external_id(marker, deadline).await?
        };
        let resumed = existing.is_some();
        let fields = account.zendesk.fact_fields;
        let ticket = match existing {
            Some(t) => t.id,
            None => {
                let uploads = self.upload(draft.files, deadline).await?;
                self.step(Step::AfterUploads, uid)?;
                let custom_fields = match fields {
                    Some(fields) => draft
                        .facts
                        .iter()
                        .map(|(fact, value)| zendesk::CustomField {
                            id: fields.id(*fact),
                            value: value.clone().into(),
                        })
                        .collect(),
                    None => Vec::new(),
                };
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
                    custom_fields,
                };
                let t = self.zendesk.create_ticket(&new, marker, deadline).await?;
                self.step(Step::AfterTicketCreate, uid)?;
                t.id
            }
        };
        let ticket = TicketId::new(ticket.0).map_err(|_| PollError::BadTicketId(ticket.0))?;
        let note = draft
            .note_html
            .filter(|_| fields.is_none() || draft.note_essential);
        if let Some(note) = note {
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
    let hex = pec::encode::hex(&digest);
    MessageId::parse(&format!("sha256-{hex}@pec-connector.invalid"))
        .expect("a hex digest is a valid id")
}

/// Why a message could not be imported, with what Zendesk said of each field it refused.
fn reason_of(e: &PollError) -> String {
    let mut reason = e.to_string();
    if let PollError::Zendesk(ZendeskError::Invalid { details, .. }) = e {
        for d in details.iter().take(5) {
            reason.push_str(&format!("; {}: {}", d.field, d.description));
        }
    }
    reason
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
    fn poll_stats_add_up_and_remember_the_failing_message() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(5);
        let t2 = t1 + chrono::Duration::minutes(5);
        let parked = ParkedMessage {
            uid_validity: 9,
            uid: 4,
            ticket: Some(77),
            reason: "zendesk rejected".into(),
            at: t0,
        };
        let ok = PollOutcome {
            tickets_created: 2,
            comments_added: 1,
            receipts_noted: 3,
            accepted: 1,
            unreadable: 1,
            duplicates: 7,
            parked: 1,
            last_parked: Some(parked.clone()),
            ..PollOutcome::default()
        };
        let first = poll_stats(&PollStats::default(), &ok, &Ok(()), t0);
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
                parked: 1,
                last_parked: Some(parked.clone()),
                daily: vec![DayActivity {
                    received: 3,
                    sent: 1,
                    receipts: 3,
                    failures: 2,
                    ..DayActivity::empty(t0.date_naive())
                }],
                ..PollStats::default()
            }
        );
        // A failure at one message records its error and the message; what the poll did before
        // it still counts.
        let partial = PollOutcome {
            tickets_created: 1,
            ..PollOutcome::default()
        };
        let stopped = Err(PollError::MessageFailed {
            uid_validity: 9,
            uid: 5,
            failures: 1,
            source: Box::new(PollError::BadTicketId(0)),
        });
        let failed = poll_stats(&first, &partial, &stopped, t1);
        assert_eq!(failed.last_poll_at, Some(t1));
        assert_eq!(failed.last_success_at, Some(t0));
        assert!(failed.last_error.as_deref().unwrap().contains("UID 5"));
        assert_eq!(failed.tickets_created, 3);
        assert_eq!(
            failed.failing.as_ref().map(|f| (f.uid, f.failures)),
            Some((5, 1))
        );
        assert_eq!(failed.last_parked, Some(parked));
        // Another kind of failure keeps the failing message; a success clears it.
        let passing = poll_stats(
            &failed,
            &PollOutcome::default(),
            &Err(PollError::AccountNotFound("acme-1".into())),
            t1,
        );
        assert_eq!(passing.failing, failed.failing);
        let again = poll_stats(&passing, &ok, &Ok(()), t2);
        assert_eq!(again.last_success_at, Some(t2));
        assert_eq!(again.last_error, None);
        assert_eq!(again.failing, None);
        assert_eq!(
            (again.tickets_created, again.parked, again.receipts_noted),
            (5, 2, 6)
        );
        // The day's activity adds up over the polls (t0..t2 are one day): a failed poll counts
        // as a failure.
        let days: Vec<_> = again
            .daily
            .iter()
            .map(|d| (d.day, d.received, d.sent, d.receipts, d.failures))
            .collect();
        assert_eq!(days, [(t0.date_naive(), 7, 2, 6, 6)]);
    }

    #[test]
    fn a_stop_for_the_rate_limit_is_a_success_that_says_what_it_left() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::minutes(2);
        let stopped = PollOutcome {
            tickets_created: 30,
            remaining: 470,
            stopped_for_rate_limit: true,
            zendesk_requests_left: Some(RateLeft {
                limit: 200,
                remaining: 44,
            }),
            ..PollOutcome::default()
        };
        let before = PollStats {
            last_error: Some("cannot write to Zendesk".into()),
            ..PollStats::default()
        };
        let stats = poll_stats(&before, &stopped, &Ok(()), t0);
        assert_eq!(stats.last_success_at, Some(t0));
        assert_eq!(stats.last_error, None);
        assert_eq!((stats.tickets_created, stats.rate_limit_stops), (30, 1));
        let stop = stats.rate_limited.clone().unwrap();
        assert_eq!(
            stop,
            RateLimitStop {
                at: t0,
                messages_left: 470,
                requests_left: Some(44),
                request_limit: Some(200),
            }
        );
        assert_eq!(
            stop.describe(),
            "the last poll stopped early: Zendesk had 44 of 200 API requests left this minute, \
             kept for the agents; 470 messages left for the next poll"
        );
        let unknown = RateLimitStop {
            requests_left: None,
            messages_left: 1,
            ..stop
        };
        assert!(unknown.describe().contains("limit was reached"));
        assert!(
            unknown
                .describe()
                .ends_with("1 message left for the next poll")
        );
        // The next poll that does not stop for it clears the flag and keeps the count.
        let caught_up = PollOutcome {
            tickets_created: 470,
            caught_up: true,
            ..PollOutcome::default()
        };
        let after = poll_stats(&stats, &caught_up, &Ok(()), t1);
        assert_eq!(after.rate_limited, None);
        assert_eq!((after.tickets_created, after.rate_limit_stops), (500, 1));
    }
}
