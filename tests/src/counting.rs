//! Counting store I/O.
//!
//! * [`DynamoCounter`] is an AWS SDK interceptor: it counts, on the wire, the DynamoDB requests
//!   and the items each reads or writes (a `TransactWriteItems` of 3 items is 1 request and 3
//!   item writes; a `ConditionCheck` inside it counts as an item read; a `Query` counts the items
//!   it returned).
//! * [`CountingStore`] wraps any [`Store`] and counts calls, split into reads and writes; it can
//!   also run a hook right after an account is created (what another process does then).
//! * [`SecretsCounter`] is an AWS SDK interceptor counting Secrets Manager requests by operation.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::{
    batch_get_item::BatchGetItemInput, batch_write_item::BatchWriteItemInput,
    delete_item::DeleteItemInput, get_item::GetItemInput, put_item::PutItemInput,
    query::QueryOutput, scan::ScanOutput, transact_get_items::TransactGetItemsInput,
    transact_write_items::TransactWriteItemsInput, update_item::UpdateItemInput,
};
use chrono::{DateTime, Utc};
use connector::domain::{
    Account, AccountId, Cursor, DeliveryState, InstanceId, Lease, LeaseHolder, LeaseOutcome,
    MessageId, MessageRecord, OutboundRecord, OutboxEntry, OutboxId, PecAddress, PollStats,
    RecordOutcome, SendStatus, TicketId, Uid, UidValidity, ZendeskInstance,
};
use connector::ports::Store;
use connector::store::StoreError;

/// Reads and writes, as requests and as items.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Io {
    pub read_requests: u32,
    pub write_requests: u32,
    pub items_read: u32,
    pub items_written: u32,
}

/// Counts DynamoDB requests and items; install with `config::Builder::interceptor`.
#[derive(Debug, Clone, Default)]
pub struct DynamoCounter {
    io: Arc<Mutex<Io>>,
}

impl DynamoCounter {
    pub fn take(&self) -> Io {
        std::mem::take(&mut *self.io.lock().expect("counter lock"))
    }
}

impl Intercept for DynamoCounter {
    fn name(&self) -> &'static str {
        "DynamoCounter"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let mut io = self.io.lock().expect("counter lock");
        if input.downcast_ref::<GetItemInput>().is_some() {
            io.read_requests += 1;
            io.items_read += 1;
        } else if input.downcast_ref::<PutItemInput>().is_some()
            || input.downcast_ref::<UpdateItemInput>().is_some()
            || input.downcast_ref::<DeleteItemInput>().is_some()
        {
            io.write_requests += 1;
            io.items_written += 1;
        } else if let Some(t) = input.downcast_ref::<TransactWriteItemsInput>() {
            io.write_requests += 1;
            for item in t.transact_items() {
                if item.condition_check.is_some() {
                    io.items_read += 1;
                } else {
                    io.items_written += 1;
                }
            }
        } else if let Some(b) = input.downcast_ref::<BatchWriteItemInput>() {
            io.write_requests += 1;
            let n: usize = b
                .request_items()
                .map(|m| m.values().map(Vec::len).sum())
                .unwrap_or(0);
            io.items_written += n as u32;
        } else if let Some(t) = input.downcast_ref::<TransactGetItemsInput>() {
            io.read_requests += 1;
            io.items_read += t.transact_items().len() as u32;
        } else if let Some(b) = input.downcast_ref::<BatchGetItemInput>() {
            io.read_requests += 1;
            let n: usize = b
                .request_items()
                .map(|m| m.values().map(|k| k.keys().len()).sum())
                .unwrap_or(0);
            io.items_read += n as u32;
        } else {
            // Query and Scan: the items are counted when they come back.
            io.read_requests += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            let n = if let Some(q) = output.downcast_ref::<QueryOutput>() {
                q.count
            } else if let Some(s) = output.downcast_ref::<ScanOutput>() {
                s.count
            } else {
                0
            };
            self.io.lock().expect("counter lock").items_read += n.max(0) as u32;
        }
        Ok(())
    }
}

/// Counts Secrets Manager requests on the wire, by operation (`GetSecretValue`, ...); install
/// with `aws_sdk_secretsmanager::config::Builder::interceptor`.
#[derive(Debug, Clone, Default)]
pub struct SecretsCounter {
    calls: Arc<Mutex<BTreeMap<&'static str, u32>>>,
}

impl SecretsCounter {
    /// The counts so far, reset to zero.
    pub fn take(&self) -> BTreeMap<&'static str, u32> {
        std::mem::take(&mut *self.calls.lock().expect("counter lock"))
    }

    /// The number of `op` requests so far, reset to zero (the others are kept).
    pub fn take_op(&self, op: &str) -> u32 {
        self.calls
            .lock()
            .expect("counter lock")
            .remove(op)
            .unwrap_or(0)
    }

    /// Every request so far, reset to zero.
    pub fn take_all(&self) -> u32 {
        self.take().values().sum()
    }
}

impl aws_sdk_secretsmanager::config::Intercept for SecretsCounter {
    fn name(&self) -> &'static str {
        "SecretsCounter"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_secretsmanager::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_secretsmanager::config::ConfigBag,
    ) -> Result<(), aws_sdk_secretsmanager::error::BoxError> {
        use aws_sdk_secretsmanager::operation::{
            create_secret::CreateSecretInput, delete_secret::DeleteSecretInput,
            describe_secret::DescribeSecretInput, get_secret_value::GetSecretValueInput,
            list_secrets::ListSecretsInput, put_secret_value::PutSecretValueInput,
            update_secret_version_stage::UpdateSecretVersionStageInput,
        };
        let input = context.input();
        let op = if input.downcast_ref::<GetSecretValueInput>().is_some() {
            "GetSecretValue"
        } else if input.downcast_ref::<PutSecretValueInput>().is_some() {
            "PutSecretValue"
        } else if input.downcast_ref::<CreateSecretInput>().is_some() {
            "CreateSecret"
        } else if input
            .downcast_ref::<UpdateSecretVersionStageInput>()
            .is_some()
        {
            "UpdateSecretVersionStage"
        } else if input.downcast_ref::<DeleteSecretInput>().is_some() {
            "DeleteSecret"
        } else if input.downcast_ref::<DescribeSecretInput>().is_some() {
            "DescribeSecret"
        } else if input.downcast_ref::<ListSecretsInput>().is_some() {
            "ListSecrets"
        } else {
            "other"
        };
        *self
            .calls
            .lock()
            .expect("counter lock")
            .entry(op)
            .or_default() += 1;
        Ok(())
    }
}

/// What runs right after an account is created, before `create_account` returns.
pub type CreateHook =
    Box<dyn Fn(AccountId) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Counts calls to a [`Store`]: reads (get, list, find) and writes (everything else).
pub struct CountingStore {
    inner: Arc<dyn Store>,
    io: Mutex<Io>,
    after_create: Option<CreateHook>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            io: Mutex::default(),
            after_create: None,
        }
    }

    /// Runs `hook` with the new account's id each time an account is created.
    pub fn after_create(mut self, hook: CreateHook) -> Self {
        self.after_create = Some(hook);
        self
    }

    pub fn take(&self) -> Io {
        std::mem::take(&mut *self.io.lock().expect("counter lock"))
    }

    fn read(&self) {
        let mut io = self.io.lock().expect("counter lock");
        io.read_requests += 1;
    }

    fn write(&self) {
        let mut io = self.io.lock().expect("counter lock");
        io.write_requests += 1;
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.write();
        self.inner.create_account(account).await?;
        if let Some(hook) = &self.after_create {
            hook(account.id.clone()).await;
        }
        Ok(())
    }
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.read();
        self.inner.get_account(id).await
    }
    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read();
        self.inner.list_accounts().await
    }
    async fn update_account(&self, account: &Account) -> Result<(), StoreError> {
        self.write();
        self.inner.update_account(account).await
    }
    async fn set_account_health(
        &self,
        id: &AccountId,
        health: &connector::domain::AccountHealth,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner.set_account_health(id, health).await
    }
    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete_account(id).await
    }
    async fn take_lease(
        &self,
        id: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        self.write();
        self.inner.take_lease(id, holder, now, ttl).await
    }
    // `release_lease` is the trait's default (it calls this): one write either way.
    async fn release_lease_with(
        &self,
        lease: &Lease,
        stats: Option<&PollStats>,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner.release_lease_with(lease, stats).await
    }
    async fn poll_state(
        &self,
        id: &AccountId,
    ) -> Result<Option<(Option<Cursor>, PollStats)>, StoreError> {
        self.read();
        self.inner.poll_state(id).await
    }
    async fn advance_cursor(
        &self,
        lease: &Lease,
        expected: Option<&Cursor>,
        next: &Cursor,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner.advance_cursor(lease, expected, next).await
    }
    async fn record_message(
        &self,
        lease: &Lease,
        record: &MessageRecord,
    ) -> Result<RecordOutcome, StoreError> {
        self.write();
        self.inner.record_message(lease, record).await
    }
    async fn find_message(
        &self,
        account: &AccountId,
        uid_validity: UidValidity,
        uid: Uid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.read();
        self.inner.find_message(account, uid_validity, uid).await
    }
    async fn find_message_by_message_id(
        &self,
        account: &AccountId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.read();
        self.inner
            .find_message_by_message_id(account, message_id)
            .await
    }
    async fn record_outbound(&self, record: &OutboundRecord) -> Result<(), StoreError> {
        self.write();
        self.inner.record_outbound(record).await
    }
    async fn set_identificativo(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        identificativo: &MessageId,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .set_identificativo(account, message_id, identificativo)
            .await
    }
    async fn find_outbound(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<OutboundRecord>, StoreError> {
        self.read();
        self.inner.find_outbound(account, id).await
    }
    async fn set_outbound_status(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        status: SendStatus,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .set_outbound_status(account, message_id, status)
            .await
    }
    async fn set_delivery(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        recipient: &PecAddress,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .set_delivery(account, message_id, recipient, state)
            .await
    }
    async fn outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
    ) -> Result<Option<u64>, StoreError> {
        self.read();
        self.inner.outbound_watermark(account, ticket).await
    }
    async fn note_ticket_attempt(
        &self,
        account: &AccountId,
        marker: &str,
    ) -> Result<bool, StoreError> {
        self.write();
        self.inner.note_ticket_attempt(account, marker).await
    }
    async fn advance_outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
        comment: u64,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .advance_outbound_watermark(account, ticket, comment)
            .await
    }
    async fn put_instance(&self, instance: &ZendeskInstance) -> Result<(), StoreError> {
        self.write();
        self.inner.put_instance(instance).await
    }
    async fn get_instance(&self, id: &InstanceId) -> Result<Option<ZendeskInstance>, StoreError> {
        self.read();
        self.inner.get_instance(id).await
    }
    async fn list_instances(&self) -> Result<Vec<ZendeskInstance>, StoreError> {
        self.read();
        self.inner.list_instances().await
    }
    async fn delete_instance(&self, id: &InstanceId) -> Result<bool, StoreError> {
        self.write();
        self.inner.delete_instance(id).await
    }
    async fn enqueue_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.write();
        self.inner.enqueue_outbox(entry).await
    }
    async fn enqueue_outbox_claimed(
        &self,
        entry: &OutboxEntry,
        holder: &LeaseHolder,
        claimed_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .enqueue_outbox_claimed(entry, holder, claimed_until)
            .await
    }
    async fn claim_outbox(
        &self,
        account: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.write();
        self.inner
            .claim_outbox(account, holder, now, ttl, limit)
            .await
    }
    async fn complete_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner.complete_outbox(account, id, holder).await
    }
    async fn retry_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        self.write();
        self.inner
            .retry_outbox(account, id, holder, not_before, error)
            .await
    }
}
