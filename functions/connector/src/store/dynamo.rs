//! The [`Store`] in one DynamoDB table (single-table design).
//!
//! Keys (`pk` / `sk`, both strings; [`TableDefinition`] is the one place they are defined, and
//! `template.yaml` declares the same table):
//!
//! | pk | sk | what |
//! |---|---|---|
//! | `ACCOUNTS` | `ACCOUNT#<id>` | an account's settings (one partition, so listing is a Query) |
//! | `ACCOUNT#<id>` | `STATE` | cursor (`uid_validity`, `last_uid`, `baseline_uid_next`), lease (`lease_holder`, `lease_expires_at`) and poll stats (`stats`, a map written by the lease release) |
//! | `ACCOUNT#<id>` | `MSG#<uidvalidity>#<uid>` | a message record |
//! | `ACCOUNT#<id>` | `MID#<message-id>` | the same record, found by Message-ID |
//! | `ACCOUNT#<id>` | `OUT#<message-id>` | a PEC we sent (with its `status`, `delivery`, ...) |
//! | `ACCOUNT#<id>` | `OUTID#<identificativo>` | pointer to the `OUT#` item by the provider's identificativo (no copy of the record) |
//! | `ACCOUNT#<id>` | `TRY#<marker>` | a ticket create about to be attempted (so a first attempt needs no lookup in Zendesk) |
//! | `ACCOUNT#<id>` | `OUTBOX#<id>` | a send waiting to be retried (`claimed_by`, `claimed_until` while claimed) |
//! | `INSTANCES` | `INSTANCE#<id>` | a registered Zendesk instance's settings (one partition, so listing is a Query; no secret) |
//!
//! Everything kept for an account lives in its own partition, so deleting an account is one
//! Query and batch deletes, and nothing can be left behind. The lease and the cursor share the
//! `STATE` item: taking the lease is one conditional `UpdateItem` that also returns the cursor
//! and the poll stats, and releasing it is one that also stores the poll's stats.
//! A message record is written together with the cursor advance in one `TransactWriteItems`
//! whose conditions make it exactly-once.
//!
//! Measured on the wire (`tests/tests/aws.rs`, `poll_io_budget`): a poll with nothing new reads
//! 1 item and writes 2 (lease taken, lease released); a poll with one new message reads 1 item
//! and writes 5 in 3 requests (lease, one transaction of record-by-UID + record-by-Message-ID +
//! cursor, release); a message that becomes a new ticket adds one conditional `PutItem` (the
//! `TRY#` note that spares a search in Zendesk). An admin's status read of an account's poll state is one `GetItem` of its
//! `STATE` item, whoever holds the lease.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, Put, ReturnValue, ScalarAttributeType, TransactWriteItem,
    Update, WriteRequest,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use super::StoreError;
use crate::aws::{AwsFailure, classify};
use crate::domain::{
    Account, AccountHealth, AccountId, Cursor, DeliveryState, InstanceId, Lease, LeaseHolder,
    LeaseOutcome, MessageId, MessageRecord, OutboundRecord, OutboxEntry, OutboxId, PecAddress,
    PollStats, RecordOutcome, SendStatus, TicketId, Uid, UidValidity, ZendeskInstance,
};
use crate::ports::Store;

type Item = HashMap<String, AttributeValue>;

/// The table the code expects: the key schema, billing and recovery settings. `template.yaml`
/// declares the same (a test compares them).
pub struct TableDefinition;

impl TableDefinition {
    pub const PARTITION_KEY: &'static str = "pk";
    pub const SORT_KEY: &'static str = "sk";
    pub const BILLING_MODE: &'static str = "PAY_PER_REQUEST";
    pub const POINT_IN_TIME_RECOVERY: bool = true;

    /// Creates the table (tests, self-hosting without SAM) and turns point-in-time recovery on.
    pub async fn create(client: &Client, table: &str) -> Result<(), StoreError> {
        let op = format!("create table {table}");
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| rejected(&op, e))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| rejected(&op, e))
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::from(Self::BILLING_MODE))
            .attribute_definitions(attr(Self::PARTITION_KEY)?)
            .attribute_definitions(attr(Self::SORT_KEY)?)
            .key_schema(key(Self::PARTITION_KEY, KeyType::Hash)?)
            .key_schema(key(Self::SORT_KEY, KeyType::Range)?)
            .send()
            .await
            .map_err(|e| sdk(&op, table, e))?;
        client
            .update_continuous_backups()
            .table_name(table)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder()
                    .point_in_time_recovery_enabled(Self::POINT_IN_TIME_RECOVERY)
                    .build()
                    .map_err(|e| rejected(&op, e))?,
            )
            .send()
            .await
            .map_err(|e| sdk(&op, table, e))?;
        Ok(())
    }
}

/// Key values of the single-table design.
mod keys {
    use crate::domain::{AccountId, InstanceId, MessageId, OutboxId, TicketId, Uid, UidValidity};

    pub const ACCOUNTS: &str = "ACCOUNTS";
    pub const STATE: &str = "STATE";
    pub const INSTANCES: &str = "INSTANCES";

    pub fn instance_sk(id: &InstanceId) -> String {
        format!("INSTANCE#{id}")
    }

    pub fn account_sk(id: &AccountId) -> String {
        format!("ACCOUNT#{id}")
    }
    pub fn account_pk(id: &AccountId) -> String {
        format!("ACCOUNT#{id}")
    }
    /// Zero-padded so that records sort by UIDVALIDITY then UID.
    pub fn message(uv: UidValidity, uid: Uid) -> String {
        format!("MSG#{:010}#{:010}", uv.get(), uid.get())
    }
    pub fn message_id(mid: &MessageId) -> String {
        format!("MID#{mid}")
    }
    pub fn outbound(mid: &MessageId) -> String {
        format!("OUT#{mid}")
    }
    pub fn identificativo(ident: &MessageId) -> String {
        format!("OUTID#{ident}")
    }
    pub fn ticket_attempt(marker: &str) -> String {
        format!("TRY#{marker}")
    }
    pub fn watermark(ticket: TicketId) -> String {
        format!("WATERMARK#{}", ticket.get())
    }
    pub const OUTBOX_PREFIX: &str = "OUTBOX#";
    pub fn outbox(id: &OutboxId) -> String {
        format!("{OUTBOX_PREFIX}{id}")
    }
}

/// The DynamoDB [`Store`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn key(pk: String, sk: String) -> Item {
        HashMap::from([
            (
                TableDefinition::PARTITION_KEY.to_owned(),
                AttributeValue::S(pk),
            ),
            (TableDefinition::SORT_KEY.to_owned(), AttributeValue::S(sk)),
        ])
    }

    fn err<E, R>(&self, op: &str, e: SdkError<E, R>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        sdk(op, &self.table, e)
    }

    /// The outcome of a write conditional on holding the lease: a refused condition is explained
    /// from the stored state (lease lost, cursor moved, ...).
    async fn leased_write<O, E, R>(
        &self,
        op: &str,
        lease: &Lease,
        result: Result<O, SdkError<E, R>>,
    ) -> Result<(), StoreError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Err(self
                .explain_state(op, &lease.account, lease.holder.as_str())
                .await),
            Err(e) => Err(self.err(op, e)),
        }
    }

    async fn get(&self, op: &str, pk: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.err(op, e))?;
        Ok(out.item)
    }

    /// Every item of a partition (optionally under a sort key prefix), following pages.
    /// [`Self::get`], the item read as a `T`.
    async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        pk: String,
        sk: String,
    ) -> Result<Option<T>, StoreError> {
        self.get(op, pk, sk)
            .await?
            .map(|item| from_item(op, &item, &[]))
            .transpose()
    }

    /// Every item of partition `pk`, read as `T`s.
    async fn list_as<T: serde::de::DeserializeOwned>(
        &self,
        op: &str,
        pk: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.query_partition(op, pk, None)
            .await?
            .iter()
            .map(|item| from_item(op, item, &[]))
            .collect()
    }

    async fn query_partition(
        &self,
        op: &str,
        pk: &str,
        sk_prefix: Option<&str>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_names("#pk", TableDefinition::PARTITION_KEY)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take());
            q = match sk_prefix {
                Some(prefix) => q
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", TableDefinition::SORT_KEY)
                    .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned())),
                None => q.key_condition_expression("#pk = :pk"),
            };
            let out = q.send().await.map_err(|e| self.err(op, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }

    /// Reads the account's `STATE` item to explain why a conditional write on it failed.
    async fn explain_state(&self, op: &str, account: &AccountId, holder: &str) -> StoreError {
        match self
            .get(op, keys::account_pk(account), keys::STATE.to_owned())
            .await
        {
            Err(e) => e,
            Ok(None) => StoreError::NotFound { op: op.to_owned() },
            Ok(Some(item)) if str_attr(&item, "lease_holder") != Some(holder) => {
                StoreError::LeaseNotHeld {
                    op: op.to_owned(),
                    holder: holder.to_owned(),
                }
            }
            Ok(Some(item)) => StoreError::ConditionFailed {
                op: op.to_owned(),
                reason: match cursor_of(op, &item) {
                    Ok(c) => format!("the stored cursor is {c:?}"),
                    Err(e) => e.to_string(),
                },
            },
        }
    }

    /// Runs a transaction: `Ok(false)` when a condition refused it, an error otherwise (a
    /// cancellation by a conflicting transaction or by throttling is transient, not a refusal).
    async fn transact(&self, op: &str, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        let e = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        if let SdkError::ServiceError(service) = &e
            && let TransactWriteItemsError::TransactionCanceledException(cancelled) = service.err()
        {
            let busy = cancelled.cancellation_reasons().iter().any(|r| {
                matches!(
                    r.code(),
                    Some(
                        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                    )
                )
            });
            if !busy {
                return Ok(false);
            }
            return Err(StoreError::Throttled {
                op: op.to_owned(),
                source: Box::new(e),
            });
        }
        Err(self.err(op, e))
    }

    fn put(&self, op: &str, item: Item, condition: &str) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .build()
            .map_err(|e| rejected(op, e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

/// Maps an SDK error: what failed, and whether a retry may help.
fn sdk<E, R>(op: &str, table: &str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let op = op.to_owned();
    match classify(&e) {
        AwsFailure::NotFound => StoreError::MissingTable {
            op,
            table: table.to_owned(),
        },
        // DynamoDB's LimitExceededException: too many control-plane calls at once.
        AwsFailure::Throttled | AwsFailure::LimitExceeded => StoreError::Throttled {
            op,
            source: Box::new(e),
        },
        AwsFailure::ConditionFailed => StoreError::ConditionFailed {
            op,
            reason: "a condition on the stored item failed".into(),
        },
        AwsFailure::Unavailable => StoreError::Unavailable {
            op,
            source: Box::new(e),
        },
        AwsFailure::QuotaExceeded | AwsFailure::Rejected => StoreError::Rejected {
            op,
            source: Box::new(e),
        },
    }
}

fn rejected(op: &str, e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Rejected {
        op: op.to_owned(),
        source: Box::new(e),
    }
}

fn corrupt(op: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        op: op.to_owned(),
        reason: reason.to_string(),
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn str_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn num_attr(op: &str, item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .map(|raw| {
            raw.parse::<i64>()
                .map_err(|_| corrupt(op, format!("{name} = {raw} is not an integer")))
        })
        .transpose()
}

fn cursor_of(op: &str, item: &Item) -> Result<Option<Cursor>, StoreError> {
    let (Some(uv), Some(last), Some(base)) = (
        num_attr(op, item, "uid_validity")?,
        num_attr(op, item, "last_uid")?,
        num_attr(op, item, "baseline_uid_next")?,
    ) else {
        return Ok(None);
    };
    let u32_of = |v: i64| u32::try_from(v).map_err(|e| corrupt(op, e));
    Ok(Some(Cursor {
        uid_validity: UidValidity::new(u32_of(uv)?).map_err(|e| corrupt(op, e))?,
        last_uid: u32_of(last)?,
        baseline_uid_next: u32_of(base)?,
    }))
}

/// The poll stats kept on the `STATE` item (a map attribute); Default when none were stored.
fn stats_of(op: &str, item: &Item) -> Result<PollStats, StoreError> {
    match item.get(STATS) {
        None | Some(AttributeValue::Null(_)) => Ok(PollStats::default()),
        Some(v) => serde_json::from_value(from_attr(op, v)?).map_err(|e| corrupt(op, e)),
    }
}

/// Poll stats as a map attribute (absent fields are `None`, as in [`to_item`]).
fn stats_attr(op: &str, stats: &PollStats) -> Result<AttributeValue, StoreError> {
    let Value::Object(map) = serde_json::to_value(stats).map_err(|e| corrupt(op, e))? else {
        return Err(corrupt(op, "poll stats are not an object"));
    };
    Ok(AttributeValue::M(
        map.into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, to_attr(v)))
            .collect(),
    ))
}

/// The `STATE` attribute holding the poll stats.
const STATS: &str = "stats";

fn time_of(op: &str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| corrupt(op, format!("timestamp {ms} is out of range")))
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// A serde value as item attributes (objects become the item's top-level attributes).
fn to_item<T: serde::Serialize>(
    op: &str,
    value: &T,
    pk: String,
    sk: String,
) -> Result<Item, StoreError> {
    let Value::Object(map) = serde_json::to_value(value).map_err(|e| corrupt(op, e))? else {
        return Err(corrupt(op, "not an object"));
    };
    // Absent, not NULL: `None` fields are simply not written (serde reads them back as `None`).
    let mut item: Item = map
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k, to_attr(v)))
        .collect();
    item.extend(DynamoStore::key(pk, sk));
    Ok(item)
}

/// Item attributes back into a serde value, ignoring the keys and any `skip` attributes.
fn from_item<T: serde::de::DeserializeOwned>(
    op: &str,
    item: &Item,
    skip: &[&str],
) -> Result<T, StoreError> {
    let map: serde_json::Map<String, Value> = item
        .iter()
        .filter(|(k, _)| {
            k.as_str() != TableDefinition::PARTITION_KEY
                && k.as_str() != TableDefinition::SORT_KEY
                && !skip.contains(&k.as_str())
        })
        .map(|(k, v)| Ok((k.clone(), from_attr(op, v)?)))
        .collect::<Result<_, StoreError>>()?;
    serde_json::from_value(Value::Object(map)).map_err(|e| corrupt(op, e))
}

fn to_attr(v: Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(text) => AttributeValue::S(text),
        Value::Array(list) => AttributeValue::L(list.into_iter().map(to_attr).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.into_iter().map(|(k, v)| (k, to_attr(v))).collect())
        }
    }
}

fn from_attr(op: &str, v: &AttributeValue) -> Result<Value, StoreError> {
    Ok(match v {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(raw) => {
            if let Ok(u) = raw.parse::<u64>() {
                Value::from(u)
            } else if let Ok(i) = raw.parse::<i64>() {
                Value::from(i)
            } else {
                raw.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| corrupt(op, format!("{raw} is not a number")))?
            }
        }
        AttributeValue::L(list) => Value::Array(
            list.iter()
                .map(|v| from_attr(op, v))
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), from_attr(op, v)?)))
                .collect::<Result<_, StoreError>>()?,
        ),
        other => return Err(corrupt(op, format!("unexpected attribute {other:?}"))),
    })
}

/// Outbox bookkeeping attributes, next to the serialized [`OutboxEntry`].
const OUTBOX_META: [&str; 3] = ["claimed_by", "claimed_until", "not_before_ms"];

#[async_trait]
impl Store for DynamoStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let op = format!("create account {}", account.id);
        let settings = to_item(
            &op,
            account,
            keys::ACCOUNTS.to_owned(),
            keys::account_sk(&account.id),
        )?;
        let state = Self::key(keys::account_pk(&account.id), keys::STATE.to_owned());
        let cond = "attribute_not_exists(pk)";
        let done = self
            .transact(
                &op,
                vec![self.put(&op, settings, cond)?, self.put(&op, state, cond)?],
            )
            .await?;
        if done {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists { op })
        }
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let op = format!("read account {id}");
        self.get_as(&op, keys::ACCOUNTS.to_owned(), keys::account_sk(id))
            .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let op = "list accounts";
        self.list_as(op, keys::ACCOUNTS).await
    }

    async fn update_account(&self, account: &Account) -> Result<(), StoreError> {
        let op = format!("update account {}", account.id);
        let item = to_item(
            &op,
            account,
            keys::ACCOUNTS.to_owned(),
            keys::account_sk(&account.id),
        )?;
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound { op })
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn set_account_health(
        &self,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError> {
        let op = format!("record the mailbox health of account {id}");
        let value = serde_json::to_value(health).map_err(|e| corrupt(&op, e))?;
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::ACCOUNTS.to_owned(),
                keys::account_sk(id),
            )))
            .update_expression("SET health = :h")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":h", to_attr(value))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound { op })
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let op = format!("delete account {id}");
        // State first, the account item last: an interrupted delete can be run again.
        let items = self
            .query_partition(&op, &keys::account_pk(id), None)
            .await?;
        for chunk in items.chunks(25) {
            let mut requests = chunk
                .iter()
                .map(|item| {
                    let key = item
                        .iter()
                        .filter(|(k, _)| {
                            k.as_str() == TableDefinition::PARTITION_KEY
                                || k.as_str() == TableDefinition::SORT_KEY
                        })
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key))
                        .build()
                        .map_err(|e| rejected(&op, e))?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            for attempt in 0.. {
                if requests.is_empty() {
                    break;
                }
                if attempt == 8 {
                    return Err(StoreError::Throttled {
                        op,
                        source: "batch deletes stayed unprocessed after 8 tries".into(),
                    });
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| self.err(&op, e))?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if !requests.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::ACCOUNTS.to_owned(),
                keys::account_sk(id),
            )))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.err(&op, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn take_lease(
        &self,
        id: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let op = format!("take the lease on account {id}");
        let until = now.timestamp_millis().saturating_add(ttl_ms(ttl));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(id),
                keys::STATE.to_owned(),
            )))
            .update_expression("SET lease_holder = :h, lease_expires_at = :until")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lease_holder) \
                 OR lease_expires_at <= :now OR lease_holder = :h)",
            )
            .expression_attribute_values(":h", s(holder.as_str()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(LeaseOutcome::Acquired(Lease {
                    account: id.clone(),
                    holder: holder.clone(),
                    expires_at: time_of(&op, until)?,
                    cursor: cursor_of(&op, &item)?,
                    stats: stats_of(&op, &item)?,
                }))
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                let state = self
                    .get(&op, keys::account_pk(id), keys::STATE.to_owned())
                    .await?
                    .ok_or_else(|| StoreError::NotFound { op: op.clone() })?;
                let (Some(h), Some(until)) = (
                    str_attr(&state, "lease_holder"),
                    num_attr(&op, &state, "lease_expires_at")?,
                ) else {
                    // Released between our write and our read: the caller may simply try again.
                    return Err(StoreError::ConditionFailed {
                        op,
                        reason: "the lease changed hands while being taken; try again".into(),
                    });
                };
                Ok(LeaseOutcome::Held {
                    holder: LeaseHolder::parse(h).map_err(|e| corrupt(&op, e))?,
                    expires_at: time_of(&op, until)?,
                })
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn release_lease_with(
        &self,
        lease: &Lease,
        stats: Option<&PollStats>,
    ) -> Result<(), StoreError> {
        let op = format!("release the lease on account {}", lease.account);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(&lease.account),
                keys::STATE.to_owned(),
            )))
            .condition_expression("lease_holder = :h")
            .expression_attribute_values(":h", s(lease.holder.as_str()));
        // One conditional write: the stats (when given) are stored only if the lease is released.
        req = match stats {
            Some(stats) => req
                .update_expression("REMOVE lease_holder, lease_expires_at SET #stats = :stats")
                .expression_attribute_names("#stats", STATS)
                .expression_attribute_values(":stats", stats_attr(&op, stats)?),
            None => req.update_expression("REMOVE lease_holder, lease_expires_at"),
        };
        let result = req.send().await;
        self.leased_write(&op, lease, result).await
    }

    async fn poll_state(
        &self,
        id: &AccountId,
    ) -> Result<Option<(Option<Cursor>, PollStats)>, StoreError> {
        let op = format!("read the poll state of account {id}");
        let Some(item) = self
            .get(&op, keys::account_pk(id), keys::STATE.to_owned())
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((cursor_of(&op, &item)?, stats_of(&op, &item)?)))
    }

    async fn advance_cursor(
        &self,
        lease: &Lease,
        expected: Option<&Cursor>,
        next: &Cursor,
    ) -> Result<(), StoreError> {
        let op = format!("move the cursor of account {}", lease.account);
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(&lease.account),
                keys::STATE.to_owned(),
            )))
            .update_expression(
                "SET uid_validity = :uv, last_uid = :last, baseline_uid_next = :base",
            )
            .expression_attribute_values(":h", s(lease.holder.as_str()))
            .expression_attribute_values(":uv", n(next.uid_validity))
            .expression_attribute_values(":last", n(next.last_uid))
            .expression_attribute_values(":base", n(next.baseline_uid_next));
        req = match expected {
            None => {
                req.condition_expression("lease_holder = :h AND attribute_not_exists(uid_validity)")
            }
            Some(e) => {
                if !e.can_move_to(next) {
                    return Err(StoreError::ConditionFailed {
                        op,
                        reason: format!(
                            "the cursor would move down from uid {} to {}",
                            e.last_uid, next.last_uid
                        ),
                    });
                }
                req.condition_expression(
                    "lease_holder = :h AND uid_validity = :euv AND last_uid = :elast \
                     AND baseline_uid_next = :ebase",
                )
                .expression_attribute_values(":euv", n(e.uid_validity))
                .expression_attribute_values(":elast", n(e.last_uid))
                .expression_attribute_values(":ebase", n(e.baseline_uid_next))
            }
        };
        let result = req.send().await;
        self.leased_write(&op, lease, result).await
    }

    async fn record_message(
        &self,
        lease: &Lease,
        record: &MessageRecord,
    ) -> Result<RecordOutcome, StoreError> {
        let op = format!(
            "record message {}/{} of account {}",
            record.uid_validity, record.uid, record.account
        );
        if record.account != lease.account {
            return Err(StoreError::ConditionFailed {
                op,
                reason: format!("the lease is on account {}", lease.account),
            });
        }
        let pk = keys::account_pk(&record.account);
        let by_uid = keys::message(record.uid_validity, record.uid);
        let mut items = vec![self.put(
            &op,
            to_item(&op, record, pk.clone(), by_uid.clone())?,
            "attribute_not_exists(pk)",
        )?];
        if let Some(mid) = &record.message_id {
            items.push(self.put(
                &op,
                to_item(&op, record, pk.clone(), keys::message_id(mid))?,
                "attribute_not_exists(pk)",
            )?);
        }
        let advance = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk.clone(), keys::STATE.to_owned())))
            .update_expression("SET last_uid = :uid")
            .condition_expression("lease_holder = :h AND uid_validity = :uv AND last_uid < :uid")
            .expression_attribute_values(":h", s(lease.holder.as_str()))
            .expression_attribute_values(":uv", n(record.uid_validity))
            .expression_attribute_values(":uid", n(record.uid))
            .build()
            .map_err(|e| rejected(&op, e))?;
        items.push(TransactWriteItem::builder().update(advance).build());
        if self.transact(&op, items).await? {
            return Ok(RecordOutcome::Recorded);
        }
        // Refused: already recorded (by UID or Message-ID), or the lease/cursor said no.
        if let Some(first) = self.get(&op, pk.clone(), by_uid).await? {
            return Ok(RecordOutcome::AlreadyRecorded(from_item(&op, &first, &[])?));
        }
        if let Some(mid) = &record.message_id
            && let Some(first) = self.get(&op, pk.clone(), keys::message_id(mid)).await?
        {
            return Ok(RecordOutcome::AlreadyRecorded(from_item(&op, &first, &[])?));
        }
        Err(
            match self
                .explain_state(&op, &record.account, lease.holder.as_str())
                .await
            {
                StoreError::ConditionFailed { op, .. } => StoreError::ConditionFailed {
                    op,
                    reason: "the cursor is not below this uid under this uidvalidity".into(),
                },
                other => other,
            },
        )
    }

    async fn find_message(
        &self,
        account: &AccountId,
        uid_validity: UidValidity,
        uid: Uid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let op = format!("read message {uid_validity}/{uid} of account {account}");
        self.get(
            &op,
            keys::account_pk(account),
            keys::message(uid_validity, uid),
        )
        .await?
        .map(|item| from_item(&op, &item, &[]))
        .transpose()
    }

    async fn find_message_by_message_id(
        &self,
        account: &AccountId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let op = format!("read message <{message_id}> of account {account}");
        self.get_as(&op, keys::account_pk(account), keys::message_id(message_id))
            .await
    }

    async fn record_outbound(&self, record: &OutboundRecord) -> Result<(), StoreError> {
        let op = format!(
            "record sent message <{}> of account {}",
            record.message_id, record.account
        );
        let pk = keys::account_pk(&record.account);
        let mut items = vec![self.put(
            &op,
            to_item(&op, record, pk.clone(), keys::outbound(&record.message_id))?,
            "attribute_not_exists(pk)",
        )?];
        if let Some(ident) = &record.identificativo {
            let pointer = HashMap::from([
                ("message_id".to_owned(), s(record.message_id.as_str())),
                ("account".to_owned(), s(record.account.as_str())),
            ]);
            let mut pointer_item = Self::key(pk.clone(), keys::identificativo(ident));
            pointer_item.extend(pointer);
            items.push(self.put(&op, pointer_item, "attribute_not_exists(pk)")?);
        }
        // The account must exist: its STATE item is there.
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk, keys::STATE.to_owned())))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| rejected(&op, e))?;
        items.push(TransactWriteItem::builder().condition_check(check).build());
        if self.transact(&op, items).await? {
            return Ok(());
        }
        match self
            .find_outbound(&record.account, &record.message_id)
            .await?
        {
            Some(_) => Err(StoreError::AlreadyExists { op }),
            None => match self
                .get(
                    &op,
                    keys::account_pk(&record.account),
                    keys::STATE.to_owned(),
                )
                .await?
            {
                None => Err(StoreError::NotFound { op }),
                Some(_) => Err(StoreError::AlreadyExists { op }),
            },
        }
    }

    async fn set_identificativo(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        identificativo: &MessageId,
    ) -> Result<(), StoreError> {
        let op = format!(
            "set identificativo <{identificativo}> on sent message <{message_id}> of account {account}"
        );
        let pk = keys::account_pk(account);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk.clone(), keys::outbound(message_id))))
            .update_expression("SET identificativo = :i")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(identificativo) \
                 OR identificativo = :i)",
            )
            .expression_attribute_values(":i", s(identificativo.as_str()))
            .build()
            .map_err(|e| rejected(&op, e))?;
        let mut pointer = Self::key(pk.clone(), keys::identificativo(identificativo));
        pointer.insert("message_id".into(), s(message_id.as_str()));
        pointer.insert("account".into(), s(account.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(pointer))
            .condition_expression("attribute_not_exists(pk) OR message_id = :m")
            .expression_attribute_values(":m", s(message_id.as_str()))
            .build()
            .map_err(|e| rejected(&op, e))?;
        let items = vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        if self.transact(&op, items).await? {
            return Ok(());
        }
        match self.get(&op, pk, keys::outbound(message_id)).await? {
            None => Err(StoreError::NotFound { op }),
            Some(_) => Err(StoreError::ConditionFailed {
                op,
                reason: "it already has another identificativo, or that identificativo belongs to another message".into(),
            }),
        }
    }

    async fn find_outbound(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<OutboundRecord>, StoreError> {
        let op = format!("find sent message <{id}> of account {account}");
        let pk = keys::account_pk(account);
        if let Some(item) = self.get(&op, pk.clone(), keys::outbound(id)).await? {
            return from_item(&op, &item, &[]).map(Some);
        }
        let Some(pointer) = self.get(&op, pk.clone(), keys::identificativo(id)).await? else {
            return Ok(None);
        };
        let target = str_attr(&pointer, "message_id")
            .ok_or_else(|| corrupt(&op, "identificativo pointer without message_id"))?;
        let target = MessageId::parse(target).map_err(|e| corrupt(&op, e))?;
        self.get_as(&op, pk, keys::outbound(&target)).await
    }

    async fn outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
    ) -> Result<Option<u64>, StoreError> {
        let op = format!("read the outbound watermark of ticket {ticket} of account {account}");
        let Some(item) = self
            .get(&op, keys::account_pk(account), keys::watermark(ticket))
            .await?
        else {
            return Ok(None);
        };
        let comment = num_attr(&op, &item, "comment_id")?
            .ok_or_else(|| corrupt(&op, "watermark without comment_id"))?;
        u64::try_from(comment)
            .map(Some)
            .map_err(|_| corrupt(&op, format!("comment_id = {comment} is negative")))
    }

    async fn note_ticket_attempt(
        &self,
        account: &AccountId,
        marker: &str,
    ) -> Result<bool, StoreError> {
        let op = format!("note a ticket create for account {account}");
        let mut item = Self::key(keys::account_pk(account), keys::ticket_attempt(marker));
        item.insert("at".into(), s(chrono::Utc::now().to_rfc3339()));
        match self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn advance_outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
        comment: u64,
    ) -> Result<(), StoreError> {
        let op = format!(
            "move the outbound watermark of ticket {ticket} of account {account} to comment {comment}"
        );
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(account),
                keys::watermark(ticket),
            )))
            .update_expression("SET comment_id = :c")
            .condition_expression("attribute_not_exists(comment_id) OR comment_id < :c")
            .expression_attribute_values(":c", n(comment))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already at or past `comment`: nothing to move.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn set_outbound_status(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        status: SendStatus,
    ) -> Result<(), StoreError> {
        let op = format!(
            "set status {} on sent message <{message_id}> of account {account}",
            status.as_str()
        );
        // Only the `OUT#` item holds the record (the `OUTID#` pointer holds no status).
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(account),
                keys::outbound(message_id),
            )))
            // `status` is a DynamoDB reserved word.
            .update_expression("SET #st = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound { op })
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn set_delivery(
        &self,
        account: &AccountId,
        message_id: &MessageId,
        recipient: &PecAddress,
        state: DeliveryState,
    ) -> Result<(), StoreError> {
        let op = format!(
            "set delivery to {recipient} of sent message <{message_id}> of account {account}"
        );
        let state = match serde_json::to_value(state).map_err(|e| corrupt(&op, e))? {
            Value::String(text) => text,
            other => return Err(corrupt(&op, format!("{other} is not a state name"))),
        };
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::account_pk(account),
                keys::outbound(message_id),
            )))
            .update_expression("SET delivery.#r = :s")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#r", recipient.as_str())
            .expression_attribute_values(":s", s(state))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound { op })
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn put_instance(&self, instance: &ZendeskInstance) -> Result<(), StoreError> {
        let op = format!("save zendesk instance {}", instance.id);
        let item = to_item(
            &op,
            instance,
            keys::INSTANCES.to_owned(),
            keys::instance_sk(&instance.id),
        )?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| self.err(&op, e))?;
        Ok(())
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Option<ZendeskInstance>, StoreError> {
        let op = format!("read zendesk instance {id}");
        self.get_as(&op, keys::INSTANCES.to_owned(), keys::instance_sk(id))
            .await
    }

    async fn list_instances(&self) -> Result<Vec<ZendeskInstance>, StoreError> {
        let op = "list zendesk instances";
        // The sort keys share their prefix, so the query returns them in id order already.
        self.list_as(op, keys::INSTANCES).await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<bool, StoreError> {
        let op = format!("delete zendesk instance {id}");
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                keys::INSTANCES.to_owned(),
                keys::instance_sk(id),
            )))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.err(&op, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn enqueue_outbox(&self, entry: &OutboxEntry) -> Result<(), StoreError> {
        self.enqueue(entry, None).await
    }

    async fn enqueue_outbox_claimed(
        &self,
        entry: &OutboxEntry,
        holder: &LeaseHolder,
        claimed_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.enqueue(entry, Some((holder, claimed_until))).await
    }

    async fn claim_outbox(
        &self,
        account: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let op = format!("claim queued sends of account {account}");
        let now_ms = now.timestamp_millis();
        let until = now_ms.saturating_add(ttl_ms(ttl));
        let pk = keys::account_pk(account);
        let mut due = Vec::new();
        for item in self
            .query_partition(&op, &pk, Some(keys::OUTBOX_PREFIX))
            .await?
        {
            let not_before = num_attr(&op, &item, "not_before_ms")?.unwrap_or(i64::MAX);
            let claimed_until = num_attr(&op, &item, "claimed_until")?;
            if not_before <= now_ms && claimed_until.is_none_or(|c| c <= now_ms) {
                let entry: OutboxEntry = from_item(&op, &item, &OUTBOX_META)?;
                due.push((not_before, entry));
            }
        }
        due.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        let mut claimed = Vec::new();
        for (_, entry) in due {
            if claimed.len() >= limit {
                break;
            }
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(Self::key(pk.clone(), keys::outbox(&entry.id))))
                .update_expression(
                    "SET claimed_by = :h, claimed_until = :until, attempts = attempts + :one",
                )
                .condition_expression(
                    "attribute_exists(pk) AND not_before_ms <= :now \
                     AND (attribute_not_exists(claimed_until) OR claimed_until <= :now)",
                )
                .expression_attribute_values(":h", s(holder.as_str()))
                .expression_attribute_values(":until", n(until))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let item = out.attributes.unwrap_or_default();
                    claimed.push(from_item(&op, &item, &OUTBOX_META)?);
                }
                // Someone else claimed it first.
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => {}
                Err(e) => return Err(self.err(&op, e)),
            }
        }
        Ok(claimed)
    }

    async fn complete_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        let op = format!("complete queued send {id} of account {account}");
        let key = Self::key(keys::account_pk(account), keys::outbox(id));
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("claimed_by = :h")
            .expression_attribute_values(":h", s(holder.as_str()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(self.explain_outbox(&op, account, id, holder).await)
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }

    async fn retry_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
        not_before: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StoreError> {
        let op = format!("put back queued send {id} of account {account}");
        let not_before_text = match serde_json::to_value(not_before) {
            Ok(Value::String(text)) => text,
            _ => return Err(corrupt(&op, "cannot write the time")),
        };
        match self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(keys::account_pk(account), keys::outbox(id))))
            .update_expression(
                "REMOVE claimed_by, claimed_until \
                 SET not_before_ms = :nbms, not_before = :nb, last_error = :err",
            )
            .condition_expression("claimed_by = :h")
            .expression_attribute_values(":h", s(holder.as_str()))
            .expression_attribute_values(":nbms", n(not_before.timestamp_millis()))
            .expression_attribute_values(":nb", s(not_before_text))
            .expression_attribute_values(":err", s(error))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(self.explain_outbox(&op, account, id, holder).await)
            }
            Err(e) => Err(self.err(&op, e)),
        }
    }
}

impl DynamoStore {
    /// Queues `entry`, unclaimed or already claimed (`claim`: holder and until when, stored as
    /// [`claim_outbox`](Store::claim_outbox) stores a claim), in one transaction: the put if the
    /// id is free, and a check that the account exists.
    async fn enqueue(
        &self,
        entry: &OutboxEntry,
        claim: Option<(&LeaseHolder, DateTime<Utc>)>,
    ) -> Result<(), StoreError> {
        let op = match claim {
            None => format!("queue send {} of account {}", entry.id, entry.account),
            Some((holder, _)) => format!(
                "queue send {} of account {} claimed by {holder}",
                entry.id, entry.account
            ),
        };
        let pk = keys::account_pk(&entry.account);
        let mut item = to_item(&op, entry, pk.clone(), keys::outbox(&entry.id))?;
        item.insert(
            "not_before_ms".into(),
            n(entry.not_before.timestamp_millis()),
        );
        if let Some((holder, until)) = claim {
            item.insert("claimed_by".into(), s(holder.as_str()));
            item.insert("claimed_until".into(), n(until.timestamp_millis()));
        }
        let check = aws_sdk_dynamodb::types::ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(Self::key(pk.clone(), keys::STATE.to_owned())))
            .condition_expression("attribute_exists(pk)")
            .build()
            .map_err(|e| rejected(&op, e))?;
        let items = vec![
            self.put(&op, item, "attribute_not_exists(pk)")?,
            TransactWriteItem::builder().condition_check(check).build(),
        ];
        if self.transact(&op, items).await? {
            return Ok(());
        }
        match self.get(&op, pk, keys::STATE.to_owned()).await? {
            None => Err(StoreError::NotFound { op }),
            Some(_) => Err(StoreError::AlreadyExists { op }),
        }
    }

    async fn explain_outbox(
        &self,
        op: &str,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
    ) -> StoreError {
        match self
            .get(op, keys::account_pk(account), keys::outbox(id))
            .await
        {
            Err(e) => e,
            Ok(None) => StoreError::NotFound { op: op.to_owned() },
            Ok(Some(_)) => StoreError::LeaseNotHeld {
                op: op.to_owned(),
                holder: holder.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_transient_and_conditions_are_not() {
        let throttled = StoreError::Throttled {
            op: "take the lease on account a".into(),
            source: "slow down".into(),
        };
        assert!(throttled.is_transient());
        assert_eq!(
            throttled.to_string(),
            "cannot take the lease on account a: the store is throttling requests; retry later"
        );
    }

    #[test]
    fn json_values_round_trip_through_attributes() {
        let v = serde_json::json!({"a": [1, -2, 2.5, "x", null, true], "m": {"k": "v"}});
        let back = from_attr("t", &to_attr(v.clone())).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn instance_keys_sort_by_id() {
        let key = |raw: &str| keys::instance_sk(&InstanceId::parse(raw).unwrap());
        let mut ids = ["b", "a-1", "a", "a1", "z9", "0"];
        let mut sks: Vec<String> = ids.iter().map(|raw| key(raw)).collect();
        sks.sort();
        ids.sort();
        assert_eq!(sks, ids.iter().map(|raw| key(raw)).collect::<Vec<_>>());
        assert_eq!(key("acme"), "INSTANCE#acme");
    }

    #[test]
    fn message_keys_sort_by_uid() {
        let uv = UidValidity::new(7).unwrap();
        assert!(keys::message(uv, Uid::new(9).unwrap()) < keys::message(uv, Uid::new(10).unwrap()));
    }
}
