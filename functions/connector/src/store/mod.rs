//! The [`Store`] port, the error it returns ([`StoreError`]) and its adapters: DynamoDB on AWS
//! ([`dynamo`]), SQLite on one machine ([`sqlite`]).

#[cfg(feature = "aws")]
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Account, AccountHealth, AccountId, Cursor, DeliveryState, InstanceId, Lease, LeaseHolder,
    LeaseOutcome, MessageId, MessageRecord, OutboundRecord, OutboxEntry, OutboxId, PecAddress,
    PollStats, RecordOutcome, SendStatus, TicketId, Uid, UidValidity, ZendeskInstance,
};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed. Each variant says which operation (`op`, e.g. "take the lease on
/// account aruba-1") and [`is_transient`](StoreError::is_transient) says whether trying again
/// later may help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op}: it already exists")]
    AlreadyExists { op: String },
    #[error("cannot {op}: not found")]
    NotFound { op: String },
    /// A conditional write was refused: the state is not what the caller expected.
    #[error("cannot {op}: {reason}")]
    ConditionFailed { op: String, reason: String },
    #[error("cannot {op}: the lease is not held by {holder}")]
    LeaseNotHeld { op: String, holder: String },
    #[error("cannot {op}: the store is throttling requests; retry later")]
    Throttled {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: table {table} does not exist")]
    MissingTable { op: String, table: String },
    #[error("cannot {op}: the store did not answer; retry later")]
    Unavailable {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: a stored item is unreadable: {reason}")]
    Corrupt { op: String, reason: String },
    #[error("cannot {op}: the store refused the request")]
    Rejected {
        op: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether the same call may succeed later (throttling, the store unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled { .. } | StoreError::Unavailable { .. }
        )
    }

    /// The operation that failed.
    pub fn op(&self) -> &str {
        match self {
            StoreError::AlreadyExists { op }
            | StoreError::NotFound { op }
            | StoreError::ConditionFailed { op, .. }
            | StoreError::LeaseNotHeld { op, .. }
            | StoreError::Throttled { op, .. }
            | StoreError::MissingTable { op, .. }
            | StoreError::Unavailable { op, .. }
            | StoreError::Corrupt { op, .. }
            | StoreError::Rejected { op, .. } => op,
        }
    }
}

/// Account state: accounts, where polling stopped, what became of each message, what we sent,
/// what is waiting to be sent again, and who holds each mailbox right now.
///
/// Every "exactly once" decision is a conditional write in the adapter, never a read followed by
/// a write.
///
/// The poll of one account costs, by design: [`take_lease`](Store::take_lease) (one write, which
/// also returns the cursor), [`get_account`](Store::get_account) (one read),
/// one [`record_message`](Store::record_message) per new message (one atomic write of the
/// record and the cursor), and [`release_lease_with`](Store::release_lease_with) (one write, which
/// also stores the poll stats).
#[async_trait]
pub trait Store: Send + Sync {
    /// Saves a new account and its empty poll state. [`StoreError::AlreadyExists`] if the id is
    /// taken.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;
    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError>;
    /// Replaces an existing account's settings. [`StoreError::NotFound`] if there is none.
    async fn update_account(&self, account: &Account) -> Result<(), StoreError>;
    /// Replaces only the account's mailbox health (what polls learn), leaving every setting as
    /// it is stored: a poll never undoes an admin's change made meanwhile.
    /// [`StoreError::NotFound`] if there is no such account.
    async fn set_account_health(
        &self,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError>;
    /// Removes the account and everything kept for it (cursor, lease, message and outbound
    /// records, outbox). Returns whether there was an account. Deleting twice is not an error.
    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError>;

    /// Takes the account's lease for `ttl` if nobody holds an unexpired one (or `holder` already
    /// does). The granted lease carries the account's cursor.
    async fn take_lease(
        &self,
        id: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError>;
    /// Gives the lease back. [`StoreError::LeaseNotHeld`] unless `lease.holder` holds it.
    /// The stored poll stats are kept unchanged.
    async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.release_lease_with(lease, None).await
    }
    /// Gives the lease back and, with `Some(stats)`, replaces the stored poll stats, in the same
    /// single conditional write. [`StoreError::LeaseNotHeld`] unless `lease.holder` holds it
    /// (and then nothing is written).
    async fn release_lease_with(
        &self,
        lease: &Lease,
        stats: Option<&PollStats>,
    ) -> Result<(), StoreError>;
    /// The account's cursor and poll stats as stored, read without the lease and writing
    /// nothing (one read: an admin's status view, even while a poll holds the lease). `None` if
    /// there is no such account.
    async fn poll_state(
        &self,
        id: &AccountId,
    ) -> Result<Option<(Option<Cursor>, PollStats)>, StoreError>;
    /// Moves the cursor from `expected` to `next` (first activation, a new UIDVALIDITY, skipping
    /// UIDs). Conditional: the lease must be held, the stored cursor must equal `expected`, and
    /// within one UIDVALIDITY the cursor never moves down ([`StoreError::ConditionFailed`]).
    async fn advance_cursor(
        &self,
        lease: &Lease,
        expected: Option<&Cursor>,
        next: &Cursor,
    ) -> Result<(), StoreError>;

    /// Records what became of one inbound message and moves the cursor up to its UID, in one
    /// atomic conditional write. If the message was already recorded (same UIDVALIDITY and UID,
    /// or same Message-ID), nothing is written and the first record is returned. Otherwise the
    /// lease must be held, the cursor must be under the same UIDVALIDITY and below the UID.
    async fn record_message(
        &self,
        lease: &Lease,
        record: &MessageRecord,
    ) -> Result<RecordOutcome, StoreError>;
    async fn find_message(
        &self,
        account: &AccountId,
        uid_validity: UidValidity,
        uid: Uid,
    ) -> Result<Option<MessageRecord>, StoreError>;
    async fn find_message_by_message_id(
        &self,
        account: &AccountId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError>;

    /// Records a PEC we sent. [`StoreError::AlreadyExists`] if its Message-ID is recorded.
    async fn record_outbound(&self, record: &OutboundRecord) -> Result<(), StoreError>;
    /// Adds the provider's identificativo (learnt from the accettazione) to a sent PEC.
    async fn set_identificativo(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        identificativo: &MessageId,
    ) -> Result<(), StoreError>;
    /// Finds a PEC we sent by our Message-ID or by the provider's identificativo.
    async fn find_outbound(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<OutboundRecord>, StoreError>;
    /// Marks how the sending of a recorded PEC ended ([`SendStatus`]).
    /// [`StoreError::NotFound`] if no PEC with this Message-ID is recorded.
    async fn set_outbound_status(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        status: SendStatus,
    ) -> Result<(), StoreError>;
    /// Sets the delivery state of one recipient of a PEC we sent.
    async fn set_delivery(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        recipient: &PecAddress,
        state: DeliveryState,
    ) -> Result<(), StoreError>;

    /// Notes that the connector is about to create the ticket marked `marker` (its
    /// `external_id`) for `account`. `true` the first time: no create was ever attempted, so
    /// there is nothing to look for in Zendesk; `false` when an earlier attempt was noted (its
    /// ticket may exist: look it up by `external_id` before creating).
    async fn note_ticket_attempt(
        &self,
        account: &AccountId,
        marker: &str,
    ) -> Result<bool, StoreError>;

    /// The newest comment of `ticket` whose sending is decided (sent, refused, skipped, or sent
    /// within a template send): agents' public comments after it are still to be sent. `None`
    /// when no comment of the ticket was ever handled.
    async fn outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
    ) -> Result<Option<u64>, StoreError>;
    /// Moves the ticket's watermark up to `comment`; never down (a lower `comment` changes
    /// nothing). One conditional write.
    async fn advance_outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
        comment: u64,
    ) -> Result<(), StoreError>;

    /// Saves a registered Zendesk instance (creating or replacing it).
    async fn put_instance(&self, instance: &ZendeskInstance) -> Result<(), StoreError>;
    async fn get_instance(&self, id: &InstanceId) -> Result<Option<ZendeskInstance>, StoreError>;
    async fn list_instances(&self) -> Result<Vec<ZendeskInstance>, StoreError>;
    /// Removes an instance; returns whether there was one. Removing twice is not an error.
    async fn delete_instance(&self, id: &InstanceId) -> Result<bool, StoreError>;

    /// Adds a send to retry. [`StoreError::AlreadyExists`] if its id is queued.
    async fn enqueue_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError>;
    /// Adds a send that `holder` is about to try itself: the entry is queued already claimed by
    /// `holder` until `claimed_until` (its `attempts` as given), so nobody else claims it
    /// meanwhile, and `holder` can complete or retry it like a claimed one. One conditional write:
    /// [`StoreError::AlreadyExists`] if its id is queued (the dedup of concurrent deliveries).
    async fn enqueue_outbox_claimed(
        &self,
        entry: &OutboxEntry,
        holder: &LeaseHolder,
        claimed_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// Claims up to `limit` due entries (not before `now`, unclaimed or with an expired claim)
    /// for `ttl`, oldest first; each claim counts as an attempt. Two claimers never get the same
    /// entry while a claim lasts.
    async fn claim_outbox(
        &self,
        account: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Removes a sent entry. [`StoreError::LeaseNotHeld`] unless `holder` claimed it.
    async fn complete_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError>;
    /// Gives a claimed entry back, to be tried again not before `not_before`.
    async fn retry_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError>;
}
