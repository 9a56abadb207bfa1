//! The [`Store`] in an embedded SQLite database (one file), for one-machine runs
//! (`pec-connector serve`, the demo, tests).
//!
//! One row per account holds its settings (JSON), its cursor and its lease; message records,
//! outbound records and the outbox hang off it with `ON DELETE CASCADE`, so deleting the account
//! deletes its state. Registered Zendesk instances are rows of their own (`zendesk_instances`,
//! settings as JSON), independent of the accounts. Every conditional decision is a single `UPDATE ... WHERE` or `INSERT` inside
//! an immediate transaction, so it also holds when two processes share the file.
//! rusqlite is synchronous: calls run on tokio's blocking pool.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::StoreError;
use crate::domain::{
    Account, AccountHealth, AccountId, Cursor, DeliveryState, InstanceId, Lease, LeaseHolder,
    LeaseOutcome, MessageId, MessageOutcome, MessageRecord, OutboundRecord, OutboxEntry, OutboxId,
    PecAddress, PollStats, RecordOutcome, SendStatus, TicketId, Uid, UidValidity, ZendeskInstance,
};
use crate::ports::Store;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id                TEXT PRIMARY KEY,
    settings          TEXT NOT NULL,
    uid_validity      INTEGER,
    last_uid          INTEGER,
    baseline_uid_next INTEGER,
    lease_holder      TEXT,
    lease_expires_at  INTEGER,
    stats             TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS messages (
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    uid_validity INTEGER NOT NULL,
    uid          INTEGER NOT NULL,
    message_id   TEXT,
    ticket_id    INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, uid_validity, uid)
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_message_id
    ON messages (account_id, message_id) WHERE message_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbound (
    account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    message_id     TEXT NOT NULL,
    identificativo TEXT,
    ticket_id      INTEGER NOT NULL,
    recipients     TEXT NOT NULL,
    delivery       TEXT NOT NULL,
    sent_at        INTEGER NOT NULL,
    status         TEXT NOT NULL DEFAULT 'sent',
    PRIMARY KEY (account_id, message_id)
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS outbound_by_identificativo
    ON outbound (account_id, identificativo) WHERE identificativo IS NOT NULL;
CREATE TABLE IF NOT EXISTS outbox (
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    id            TEXT NOT NULL,
    ticket_id     INTEGER NOT NULL,
    payload       TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    not_before    INTEGER NOT NULL,
    last_error    TEXT,
    claimed_by    TEXT,
    claimed_until INTEGER,
    PRIMARY KEY (account_id, id)
) STRICT;
CREATE TABLE IF NOT EXISTS ticket_attempts (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    marker     TEXT NOT NULL,
    at         TEXT NOT NULL,
    PRIMARY KEY (account_id, marker)
) STRICT;
CREATE TABLE IF NOT EXISTS outbound_watermarks (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    ticket_id  INTEGER NOT NULL,
    comment_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, ticket_id)
) STRICT;
CREATE TABLE IF NOT EXISTS zendesk_instances (
    id       TEXT PRIMARY KEY,
    settings TEXT NOT NULL
) STRICT;
"#;

/// The SQLite [`Store`]. Cheap to clone: clones share one connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Operations run so far (one per port call), for `serve`'s figures.
    operations: Arc<AtomicU64>,
}

impl SqliteStore {
    /// The JSON `settings` of row `id` of `table` (`accounts`, `zendesk_instances`).
    async fn settings_of<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        op: String,
        id: String,
    ) -> Result<Option<T>, StoreError> {
        self.run(op, move |conn, op| {
            let settings: Option<String> = conn
                .query_row(
                    &format!("SELECT settings FROM {table} WHERE id = ?1"),
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql(op))?;
            settings.map(|s| from_json(op, &s)).transpose()
        })
        .await
    }

    /// Every row's JSON `settings` of `table`, by id.
    async fn all_settings<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        op: &str,
    ) -> Result<Vec<T>, StoreError> {
        self.run(op.to_owned(), move |conn, op| {
            let mut stmt = conn
                .prepare(&format!("SELECT settings FROM {table} ORDER BY id"))
                .map_err(sql(op))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql(op))?;
            rows.map(|r| from_json(op, &r.map_err(sql(op))?)).collect()
        })
        .await
    }

    /// Opens (creating if needed) the database file at `path` and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let op = format!("open the database {}", path.display());
        let conn = Connection::open(path).map_err(sql(&op))?;
        Self::init(conn, &op)
    }

    /// A private database in memory (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let op = "open an in-memory database";
        let conn = Connection::open_in_memory().map_err(sql(op))?;
        Self::init(conn, op)
    }

    fn init(conn: Connection, op: &str) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(sql(op))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql(op))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql(op))?;
        conn.execute_batch(SCHEMA).map_err(sql(op))?;
        migrate(&conn, op)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            operations: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many operations (port calls) this store and its clones have run.
    pub fn operations(&self) -> u64 {
        self.operations.load(Ordering::Relaxed)
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, op: String, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &str) -> Result<T, StoreError> + Send + 'static,
    {
        self.operations.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::clone(&self.conn);
        let op2 = op.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard, &op2)
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            op,
            source: Box::new(e),
        })?
    }
}

/// Brings a database file created by an older version up to [`SCHEMA`]: `CREATE TABLE IF NOT
/// EXISTS` leaves an existing table as it was, so columns added since are added here.
fn migrate(conn: &Connection, op: &str) -> Result<(), StoreError> {
    let has_column = |table: &str, column: &str| -> Result<bool, StoreError> {
        conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            params![table, column],
            |r| r.get(0),
        )
        .map_err(sql(op))
    };
    if !has_column("outbound", "status")? {
        conn.execute_batch("ALTER TABLE outbound ADD COLUMN status TEXT NOT NULL DEFAULT 'sent'")
            .map_err(sql(op))?;
    }
    // Poll stats (JSON), kept beside the cursor; none until the first poll's release.
    if !has_column("accounts", "stats")? {
        conn.execute_batch("ALTER TABLE accounts ADD COLUMN stats TEXT")
            .map_err(sql(op))?;
    }
    Ok(())
}

/// Maps a SQLite error: busy/locked are transient, a missing table is named.
fn sql(op: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| {
        let op = op.to_owned();
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Throttled {
                    op,
                    source: Box::new(e),
                },
                ErrorCode::ConstraintViolation => StoreError::ConditionFailed {
                    op,
                    reason: msg.clone().unwrap_or_else(|| "a constraint failed".into()),
                },
                _ => match msg
                    .as_deref()
                    .and_then(|m| m.strip_prefix("no such table: "))
                {
                    Some(table) => StoreError::MissingTable {
                        op,
                        table: table.to_owned(),
                    },
                    None => StoreError::Rejected {
                        op,
                        source: Box::new(e),
                    },
                },
            },
            _ => StoreError::Rejected {
                op,
                source: Box::new(e),
            },
        }
    }
}

fn corrupt(op: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        op: op.to_owned(),
        reason: reason.to_string(),
    }
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(op: &str, ms: i64) -> Result<DateTime<Utc>, StoreError> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| corrupt(op, format!("timestamp {ms} is out of range")))
}

fn ttl_millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(op: &str, v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| corrupt(op, e))
}

fn from_json<T: serde::de::DeserializeOwned>(op: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(op, e))
}

fn enum_str<T: serde::Serialize>(op: &str, v: &T) -> Result<String, StoreError> {
    match serde_json::to_value(v).map_err(|e| corrupt(op, e))? {
        serde_json::Value::String(s) => Ok(s),
        other => Err(corrupt(op, format!("{other} is not a name"))),
    }
}

fn cursor_from(
    op: &str,
    uv: Option<i64>,
    last: Option<i64>,
    base: Option<i64>,
) -> Result<Option<Cursor>, StoreError> {
    let (Some(uv), Some(last), Some(base)) = (uv, last, base) else {
        return Ok(None);
    };
    let num = |n: i64| u32::try_from(n).map_err(|_| corrupt(op, format!("{n} is not a u32")));
    Ok(Some(Cursor {
        uid_validity: UidValidity::new(num(uv)?).map_err(|e| corrupt(op, e))?,
        last_uid: num(last)?,
        baseline_uid_next: num(base)?,
    }))
}

const MESSAGE_COLUMNS: &str =
    "account_id, uid_validity, uid, message_id, ticket_id, outcome, recorded_at";

fn message_from_row(op: &str, row: &rusqlite::Row<'_>) -> Result<MessageRecord, StoreError> {
    let get = |e: rusqlite::Error| corrupt(op, e);
    let account: String = row.get(0).map_err(get)?;
    let uv: i64 = row.get(1).map_err(get)?;
    let uid: i64 = row.get(2).map_err(get)?;
    let message_id: Option<String> = row.get(3).map_err(get)?;
    let ticket: i64 = row.get(4).map_err(get)?;
    let outcome: String = row.get(5).map_err(get)?;
    let recorded_at: i64 = row.get(6).map_err(get)?;
    Ok(MessageRecord {
        account: AccountId::parse(&account).map_err(|e| corrupt(op, e))?,
        uid_validity: UidValidity::new(u32::try_from(uv).map_err(|e| corrupt(op, e))?)
            .map_err(|e| corrupt(op, e))?,
        uid: Uid::new(u32::try_from(uid).map_err(|e| corrupt(op, e))?)
            .map_err(|e| corrupt(op, e))?,
        message_id: message_id
            .as_deref()
            .map(MessageId::parse)
            .transpose()
            .map_err(|e| corrupt(op, e))?,
        ticket: crate::domain::TicketId::new(u64::try_from(ticket).map_err(|e| corrupt(op, e))?)
            .map_err(|e| corrupt(op, e))?,
        outcome: from_json::<MessageOutcome>(op, &format!("\"{outcome}\""))?,
        recorded_at: from_millis(op, recorded_at)?,
    })
}

const OUTBOUND_COLUMNS: &str =
    "account_id, message_id, identificativo, ticket_id, recipients, delivery, sent_at, status";

fn outbound_from_row(op: &str, row: &rusqlite::Row<'_>) -> Result<OutboundRecord, StoreError> {
    let get = |e: rusqlite::Error| corrupt(op, e);
    let account: String = row.get(0).map_err(get)?;
    let message_id: String = row.get(1).map_err(get)?;
    let identificativo: Option<String> = row.get(2).map_err(get)?;
    let ticket: i64 = row.get(3).map_err(get)?;
    let recipients: String = row.get(4).map_err(get)?;
    let delivery: String = row.get(5).map_err(get)?;
    let sent_at: i64 = row.get(6).map_err(get)?;
    let status: String = row.get(7).map_err(get)?;
    Ok(OutboundRecord {
        account: AccountId::parse(&account).map_err(|e| corrupt(op, e))?,
        message_id: MessageId::parse(&message_id).map_err(|e| corrupt(op, e))?,
        identificativo: identificativo
            .as_deref()
            .map(MessageId::parse)
            .transpose()
            .map_err(|e| corrupt(op, e))?,
        ticket: crate::domain::TicketId::new(u64::try_from(ticket).map_err(|e| corrupt(op, e))?)
            .map_err(|e| corrupt(op, e))?,
        recipients: from_json(op, &recipients)?,
        delivery: from_json(op, &delivery)?,
        sent_at: from_millis(op, sent_at)?,
        status: SendStatus::parse(&status).map_err(|e| corrupt(op, e))?,
    })
}

const OUTBOX_COLUMNS: &str = "account_id, id, ticket_id, payload, attempts, not_before, last_error, claimed_by, claimed_until";

fn outbox_from_row(op: &str, row: &rusqlite::Row<'_>) -> Result<OutboxEntry, StoreError> {
    let get = |e: rusqlite::Error| corrupt(op, e);
    let account: String = row.get(0).map_err(get)?;
    let id: String = row.get(1).map_err(get)?;
    let ticket: i64 = row.get(2).map_err(get)?;
    let payload: String = row.get(3).map_err(get)?;
    let attempts: i64 = row.get(4).map_err(get)?;
    let not_before: i64 = row.get(5).map_err(get)?;
    let last_error: Option<String> = row.get(6).map_err(get)?;
    Ok(OutboxEntry {
        account: AccountId::parse(&account).map_err(|e| corrupt(op, e))?,
        id: OutboxId::parse(&id).map_err(|e| corrupt(op, e))?,
        ticket: crate::domain::TicketId::new(u64::try_from(ticket).map_err(|e| corrupt(op, e))?)
            .map_err(|e| corrupt(op, e))?,
        payload: from_json(op, &payload)?,
        attempts: u32::try_from(attempts).map_err(|e| corrupt(op, e))?,
        not_before: from_millis(op, not_before)?,
        last_error,
    })
}

/// An account's lease columns: holder and expiry (epoch milliseconds).
type LeaseColumns = (Option<String>, Option<i64>);

/// Reads the lease columns of an account: `None` if there is no such account.
fn lease_columns(
    conn: &Connection,
    op: &str,
    id: &str,
) -> Result<Option<LeaseColumns>, StoreError> {
    conn.query_row(
        "SELECT lease_holder, lease_expires_at FROM accounts WHERE id = ?1",
        params![id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(sql(op))
}

/// Fails unless `holder` holds the account's lease.
fn require_lease(conn: &Connection, op: &str, id: &str, holder: &str) -> Result<(), StoreError> {
    match lease_columns(conn, op, id)? {
        None => Err(StoreError::NotFound { op: op.to_owned() }),
        Some((Some(h), _)) if h == holder => Ok(()),
        Some(_) => Err(StoreError::LeaseNotHeld {
            op: op.to_owned(),
            holder: holder.to_owned(),
        }),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let op = format!("create account {}", account.id);
        let settings = to_json(&op, account)?;
        let id = account.id.to_string();
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "INSERT INTO accounts (id, settings) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                    params![id, settings],
                )
                .map_err(sql(op))?;
            if n == 0 {
                return Err(StoreError::AlreadyExists { op: op.to_owned() });
            }
            Ok(())
        })
        .await
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.settings_of("accounts", format!("read account {id}"), id.to_string())
            .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.all_settings("accounts", "list accounts").await
    }

    async fn update_account(&self, account: &Account) -> Result<(), StoreError> {
        let op = format!("update account {}", account.id);
        let settings = to_json(&op, account)?;
        let id = account.id.to_string();
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "UPDATE accounts SET settings = ?2 WHERE id = ?1",
                    params![id, settings],
                )
                .map_err(sql(op))?;
            if n == 0 {
                return Err(StoreError::NotFound { op: op.to_owned() });
            }
            Ok(())
        })
        .await
    }

    async fn set_account_health(
        &self,
        id: &AccountId,
        health: &AccountHealth,
    ) -> Result<(), StoreError> {
        let op = format!("record the mailbox health of account {id}");
        let health = to_json(&op, health)?;
        let id = id.to_string();
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "UPDATE accounts SET settings = json_set(settings, '$.health', json(?2)) WHERE id = ?1",
                    params![id, health],
                )
                .map_err(sql(op))?;
            if n == 0 {
                return Err(StoreError::NotFound { op: op.to_owned() });
            }
            Ok(())
        })
        .await
    }

    async fn delete_account(&self, id: &AccountId) -> Result<bool, StoreError> {
        let op = format!("delete account {id}");
        let id = id.to_string();
        self.run(op, move |conn, op| {
            let n = conn
                .execute("DELETE FROM accounts WHERE id = ?1", params![id])
                .map_err(sql(op))?;
            Ok(n > 0)
        })
        .await
    }

    async fn take_lease(
        &self,
        id: &AccountId,
        holder: &LeaseHolder,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let op = format!("take the lease on account {id}");
        let (account, holder) = (id.clone(), holder.clone());
        let now_ms = millis(now);
        let until_ms = now_ms.saturating_add(ttl_millis(ttl));
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let granted = tx
                .query_row(
                    "UPDATE accounts SET lease_holder = ?2, lease_expires_at = ?3
                     WHERE id = ?1
                       AND (lease_holder IS NULL OR lease_expires_at <= ?4 OR lease_holder = ?2)
                     RETURNING uid_validity, last_uid, baseline_uid_next, stats",
                    params![account.as_str(), holder.as_str(), until_ms, now_ms],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get::<_, Option<String>>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql(op))?;
            let outcome = match granted {
                Some((uv, last, base, stats)) => LeaseOutcome::Acquired(Lease {
                    account: account.clone(),
                    holder: holder.clone(),
                    expires_at: from_millis(op, until_ms)?,
                    cursor: cursor_from(op, uv, last, base)?,
                    stats: match stats {
                        Some(json) => from_json(op, &json)?,
                        None => PollStats::default(),
                    },
                }),
                None => match lease_columns(&tx, op, account.as_str())? {
                    None => return Err(StoreError::NotFound { op: op.to_owned() }),
                    Some((Some(h), Some(until))) => LeaseOutcome::Held {
                        holder: LeaseHolder::parse(&h).map_err(|e| corrupt(op, e))?,
                        expires_at: from_millis(op, until)?,
                    },
                    Some(_) => return Err(corrupt(op, "lease refused but nobody holds it")),
                },
            };
            tx.commit().map_err(sql(op))?;
            Ok(outcome)
        })
        .await
    }

    async fn release_lease_with(
        &self,
        lease: &Lease,
        stats: Option<&PollStats>,
    ) -> Result<(), StoreError> {
        let op = format!("release the lease on account {}", lease.account);
        let (account, holder) = (lease.account.to_string(), lease.holder.to_string());
        let stats = stats.map(|s| to_json(&op, s)).transpose()?;
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            // One statement: the stats (when given) are stored only if the lease is released.
            let n = tx
                .execute(
                    "UPDATE accounts SET lease_holder = NULL, lease_expires_at = NULL,
                         stats = COALESCE(?3, stats)
                     WHERE id = ?1 AND lease_holder = ?2",
                    params![account, holder, stats],
                )
                .map_err(sql(op))?;
            if n == 0 {
                require_lease(&tx, op, &account, &holder)?;
            }
            tx.commit().map_err(sql(op))
        })
        .await
    }

    async fn poll_state(
        &self,
        id: &AccountId,
    ) -> Result<Option<(Option<Cursor>, PollStats)>, StoreError> {
        let op = format!("read the poll state of account {id}");
        let id = id.to_string();
        self.run(op, move |conn, op| {
            let row: Option<(Option<i64>, Option<i64>, Option<i64>, Option<String>)> = conn
                .query_row(
                    "SELECT uid_validity, last_uid, baseline_uid_next, stats
                     FROM accounts WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(sql(op))?;
            let Some((uv, last, base, stats)) = row else {
                return Ok(None);
            };
            let stats = match stats {
                Some(json) => from_json(op, &json)?,
                None => PollStats::default(),
            };
            Ok(Some((cursor_from(op, uv, last, base)?, stats)))
        })
        .await
    }

    async fn advance_cursor(
        &self,
        lease: &Lease,
        expected: Option<&Cursor>,
        next: &Cursor,
    ) -> Result<(), StoreError> {
        let op = format!("move the cursor of account {}", lease.account);
        if let Some(e) = expected
            && !e.can_move_to(next)
        {
            return Err(StoreError::ConditionFailed {
                op,
                reason: format!(
                    "the cursor would move down from uid {} to {}",
                    e.last_uid, next.last_uid
                ),
            });
        }
        let (account, holder) = (lease.account.to_string(), lease.holder.to_string());
        let expected = expected.copied();
        let next = *next;
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            require_lease(&tx, op, &account, &holder)?;
            let stored: (Option<i64>, Option<i64>, Option<i64>) = tx
                .query_row(
                    "SELECT uid_validity, last_uid, baseline_uid_next FROM accounts WHERE id = ?1",
                    params![account],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .map_err(sql(op))?;
            let stored = cursor_from(op, stored.0, stored.1, stored.2)?;
            if stored != expected {
                return Err(StoreError::ConditionFailed {
                    op: op.to_owned(),
                    reason: format!("the stored cursor is {stored:?}, not {expected:?}"),
                });
            }
            tx.execute(
                "UPDATE accounts SET uid_validity = ?2, last_uid = ?3, baseline_uid_next = ?4
                 WHERE id = ?1",
                params![
                    account,
                    next.uid_validity.get(),
                    next.last_uid,
                    next.baseline_uid_next
                ],
            )
            .map_err(sql(op))?;
            tx.commit().map_err(sql(op))
        })
        .await
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
        let outcome = enum_str(&op, &record.outcome)?;
        let holder = lease.holder.to_string();
        let record = record.clone();
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let account = record.account.as_str();
            let existing = tx
                .query_row(
                    &format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages
                         WHERE account_id = ?1 AND ((uid_validity = ?2 AND uid = ?3) OR message_id = ?4)
                         ORDER BY recorded_at LIMIT 1"
                    ),
                    params![
                        account,
                        record.uid_validity.get(),
                        record.uid.get(),
                        record.message_id.as_ref().map(MessageId::as_str)
                    ],
                    |r| Ok(message_from_row(op, r)),
                )
                .optional()
                .map_err(sql(op))?;
            if let Some(first) = existing {
                return Ok(RecordOutcome::AlreadyRecorded(first?));
            }
            let n = tx
                .execute(
                    "UPDATE accounts SET last_uid = ?4
                     WHERE id = ?1 AND lease_holder = ?2 AND uid_validity = ?3 AND last_uid < ?4",
                    params![account, holder, record.uid_validity.get(), record.uid.get()],
                )
                .map_err(sql(op))?;
            if n == 0 {
                require_lease(&tx, op, account, &holder)?;
                return Err(StoreError::ConditionFailed {
                    op: op.to_owned(),
                    reason: "the cursor is not below this uid under this uidvalidity".into(),
                });
            }
            tx.execute(
                &format!("INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    account,
                    record.uid_validity.get(),
                    record.uid.get(),
                    record.message_id.as_ref().map(MessageId::as_str),
                    i64::try_from(record.ticket.get()).map_err(|e| corrupt(op, e))?,
                    outcome,
                    millis(record.recorded_at)
                ],
            )
            .map_err(sql(op))?;
            tx.commit().map_err(sql(op))?;
            Ok(RecordOutcome::Recorded)
        })
        .await
    }

    async fn find_message(
        &self,
        account: &AccountId,
        uid_validity: UidValidity,
        uid: Uid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let op = format!("read message {uid_validity}/{uid} of account {account}");
        let account = account.to_string();
        self.run(op, move |conn, op| {
            conn.query_row(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages
                     WHERE account_id = ?1 AND uid_validity = ?2 AND uid = ?3"
                ),
                params![account, uid_validity.get(), uid.get()],
                |r| Ok(message_from_row(op, r)),
            )
            .optional()
            .map_err(sql(op))?
            .transpose()
        })
        .await
    }

    async fn find_message_by_message_id(
        &self,
        account: &AccountId,
        message_id: &MessageId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let op = format!("read message <{message_id}> of account {account}");
        let (account, message_id) = (account.to_string(), message_id.to_string());
        self.run(op, move |conn, op| {
            conn.query_row(
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE account_id = ?1 AND message_id = ?2"
                ),
                params![account, message_id],
                |r| Ok(message_from_row(op, r)),
            )
            .optional()
            .map_err(sql(op))?
            .transpose()
        })
        .await
    }

    async fn record_outbound(&self, record: &OutboundRecord) -> Result<(), StoreError> {
        let op = format!(
            "record sent message <{}> of account {}",
            record.message_id, record.account
        );
        let recipients = to_json(&op, &record.recipients)?;
        let delivery = to_json(&op, &record.delivery)?;
        let record = record.clone();
        self.run(op, move |conn, op| {
            let ticket = i64::try_from(record.ticket.get()).map_err(|e| corrupt(op, e))?;
            let result = conn.execute(
                &format!(
                    "INSERT INTO outbound ({OUTBOUND_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    record.account.as_str(),
                    record.message_id.as_str(),
                    record.identificativo.as_ref().map(MessageId::as_str),
                    ticket,
                    recipients,
                    delivery,
                    millis(record.sent_at),
                    record.status.as_str()
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
                {
                    Err(StoreError::AlreadyExists { op: op.to_owned() })
                }
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound { op: op.to_owned() })
                }
                Err(e) => Err(sql(op)(e)),
            }
        })
        .await
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
        let (account, message_id, ident) = (
            account.to_string(),
            message_id.to_string(),
            identificativo.to_string(),
        );
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "UPDATE outbound SET identificativo = ?3
                     WHERE account_id = ?1 AND message_id = ?2
                       AND (identificativo IS NULL OR identificativo = ?3)",
                    params![account, message_id, ident],
                )
                .map_err(sql(op))?;
            if n == 0 {
                let exists: Option<i64> = conn
                    .query_row(
                        "SELECT 1 FROM outbound WHERE account_id = ?1 AND message_id = ?2",
                        params![account, message_id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql(op))?;
                return Err(match exists {
                    None => StoreError::NotFound { op: op.to_owned() },
                    Some(_) => StoreError::ConditionFailed {
                        op: op.to_owned(),
                        reason: "it already has another identificativo".into(),
                    },
                });
            }
            Ok(())
        })
        .await
    }

    async fn find_outbound(
        &self,
        account: &AccountId,
        id: &MessageId,
    ) -> Result<Option<OutboundRecord>, StoreError> {
        let op = format!("find sent message <{id}> of account {account}");
        let (account, id) = (account.to_string(), id.to_string());
        self.run(op, move |conn, op| {
            conn.query_row(
                &format!(
                    "SELECT {OUTBOUND_COLUMNS} FROM outbound
                     WHERE account_id = ?1 AND (message_id = ?2 OR identificativo = ?2)
                     LIMIT 1"
                ),
                params![account, id],
                |r| Ok(outbound_from_row(op, r)),
            )
            .optional()
            .map_err(sql(op))?
            .transpose()
        })
        .await
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
        let (account, message_id) = (account.to_string(), message_id.to_string());
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "UPDATE outbound SET status = ?3 WHERE account_id = ?1 AND message_id = ?2",
                    params![account, message_id, status.as_str()],
                )
                .map_err(sql(op))?;
            if n == 0 {
                return Err(StoreError::NotFound { op: op.to_owned() });
            }
            Ok(())
        })
        .await
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
        let (account, message_id, recipient) = (
            account.to_string(),
            message_id.to_string(),
            recipient.clone(),
        );
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let delivery: Option<String> = tx
                .query_row(
                    "SELECT delivery FROM outbound WHERE account_id = ?1 AND message_id = ?2",
                    params![account, message_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql(op))?;
            let Some(delivery) = delivery else {
                return Err(StoreError::NotFound { op: op.to_owned() });
            };
            let mut delivery: std::collections::BTreeMap<PecAddress, DeliveryState> =
                from_json(op, &delivery)?;
            delivery.insert(recipient, state);
            tx.execute(
                "UPDATE outbound SET delivery = ?3 WHERE account_id = ?1 AND message_id = ?2",
                params![account, message_id, to_json(op, &delivery)?],
            )
            .map_err(sql(op))?;
            tx.commit().map_err(sql(op))
        })
        .await
    }

    async fn outbound_watermark(
        &self,
        account: &AccountId,
        ticket: TicketId,
    ) -> Result<Option<u64>, StoreError> {
        let op = format!("read the outbound watermark of ticket {ticket} of account {account}");
        let account = account.to_string();
        self.run(op, move |conn, op| {
            conn.query_row(
                "SELECT comment_id FROM outbound_watermarks WHERE account_id = ?1 AND ticket_id = ?2",
                params![account, ticket.get() as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map_err(sql(op))
            .map(|c| c.map(|c| c as u64))
        })
        .await
    }

    async fn note_ticket_attempt(
        &self,
        account: &AccountId,
        marker: &str,
    ) -> Result<bool, StoreError> {
        let op = format!("note a ticket create for account {account}");
        let account = account.to_string();
        let marker = marker.to_owned();
        self.run(op, move |conn, op| {
            let added = conn
                .execute(
                    "INSERT INTO ticket_attempts (account_id, marker, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (account_id, marker) DO NOTHING",
                    params![account, marker, chrono::Utc::now().to_rfc3339()],
                )
                .map_err(sql(op))?;
            Ok(added == 1)
        })
        .await
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
        let account = account.to_string();
        self.run(op, move |conn, op| {
            let comment = i64::try_from(comment).map_err(|_| corrupt(op, "comment id too large"))?;
            conn.execute(
                "INSERT INTO outbound_watermarks (account_id, ticket_id, comment_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account_id, ticket_id) DO UPDATE
                 SET comment_id = max(comment_id, excluded.comment_id)",
                params![account, ticket.get() as i64, comment],
            )
            .map_err(sql(op))?;
            Ok(())
        })
        .await
    }

    async fn put_instance(&self, instance: &ZendeskInstance) -> Result<(), StoreError> {
        let op = format!("save zendesk instance {}", instance.id);
        let settings = to_json(&op, instance)?;
        let id = instance.id.to_string();
        self.run(op, move |conn, op| {
            conn.execute(
                "INSERT INTO zendesk_instances (id, settings) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET settings = excluded.settings",
                params![id, settings],
            )
            .map_err(sql(op))?;
            Ok(())
        })
        .await
    }

    async fn get_instance(&self, id: &InstanceId) -> Result<Option<ZendeskInstance>, StoreError> {
        self.settings_of(
            "zendesk_instances",
            format!("read zendesk instance {id}"),
            id.to_string(),
        )
        .await
    }

    async fn list_instances(&self) -> Result<Vec<ZendeskInstance>, StoreError> {
        self.all_settings("zendesk_instances", "list zendesk instances")
            .await
    }

    async fn delete_instance(&self, id: &InstanceId) -> Result<bool, StoreError> {
        let op = format!("delete zendesk instance {id}");
        let id = id.to_string();
        self.run(op, move |conn, op| {
            let n = conn
                .execute("DELETE FROM zendesk_instances WHERE id = ?1", params![id])
                .map_err(sql(op))?;
            Ok(n > 0)
        })
        .await
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
        let (account, holder) = (account.to_string(), holder.to_string());
        let now_ms = millis(now);
        let until_ms = now_ms.saturating_add(ttl_millis(ttl));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.run(op, move |conn, op| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(op))?;
            let claimed = {
                let mut stmt = tx
                    .prepare(&format!(
                        "UPDATE outbox SET claimed_by = ?2, claimed_until = ?3, attempts = attempts + 1
                         WHERE account_id = ?1 AND id IN (
                             SELECT id FROM outbox
                             WHERE account_id = ?1 AND not_before <= ?4
                               AND (claimed_until IS NULL OR claimed_until <= ?4)
                             ORDER BY not_before, id LIMIT ?5)
                         RETURNING {OUTBOX_COLUMNS}"
                    ))
                    .map_err(sql(op))?;
                let rows = stmt
                    .query_map(params![account, holder, until_ms, now_ms, limit], |r| {
                        Ok(outbox_from_row(op, r))
                    })
                    .map_err(sql(op))?;
                let mut out = Vec::new();
                for row in rows {
                    out.push(row.map_err(sql(op))??);
                }
                out
            };
            tx.commit().map_err(sql(op))?;
            let mut claimed = claimed;
            claimed.sort_by(|a, b| (a.not_before, &a.id).cmp(&(b.not_before, &b.id)));
            Ok(claimed)
        })
        .await
    }

    async fn complete_outbox(
        &self,
        account: &AccountId,
        id: &OutboxId,
        holder: &LeaseHolder,
    ) -> Result<(), StoreError> {
        let op = format!("complete queued send {id} of account {account}");
        let (account, id, holder) = (account.to_string(), id.to_string(), holder.to_string());
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "DELETE FROM outbox WHERE account_id = ?1 AND id = ?2 AND claimed_by = ?3",
                    params![account, id, holder],
                )
                .map_err(sql(op))?;
            outbox_claim_check(conn, op, n, &account, &id, &holder)
        })
        .await
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
        let (account, id, holder, error) = (
            account.to_string(),
            id.to_string(),
            holder.to_string(),
            error.to_owned(),
        );
        self.run(op, move |conn, op| {
            let n = conn
                .execute(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL,
                            not_before = ?4, last_error = ?5
                     WHERE account_id = ?1 AND id = ?2 AND claimed_by = ?3",
                    params![account, id, holder, millis(not_before), error],
                )
                .map_err(sql(op))?;
            outbox_claim_check(conn, op, n, &account, &id, &holder)
        })
        .await
    }
}

impl SqliteStore {
    /// Queues `entry`, unclaimed or already claimed (`claim`: holder and until when), in one
    /// `INSERT`: [`StoreError::AlreadyExists`] if its id is queued, [`StoreError::NotFound`]
    /// without the account.
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
        let payload = to_json(&op, &entry.payload)?;
        let entry = entry.clone();
        let (claimed_by, claimed_until) = match claim {
            Some((holder, until)) => (Some(holder.to_string()), Some(millis(until))),
            None => (None, None),
        };
        self.run(op, move |conn, op| {
            let ticket = i64::try_from(entry.ticket.get()).map_err(|e| corrupt(op, e))?;
            let result = conn.execute(
                &format!(
                    "INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    entry.account.as_str(),
                    entry.id.as_str(),
                    ticket,
                    payload,
                    entry.attempts,
                    millis(entry.not_before),
                    entry.last_error,
                    claimed_by,
                    claimed_until
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                {
                    Err(StoreError::AlreadyExists { op: op.to_owned() })
                }
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound { op: op.to_owned() })
                }
                Err(e) => Err(sql(op)(e)),
            }
        })
        .await
    }
}

/// After a claim-conditional write on the outbox touched `n` rows: not found, or not our claim.
fn outbox_claim_check(
    conn: &Connection,
    op: &str,
    n: usize,
    account: &str,
    id: &str,
    holder: &str,
) -> Result<(), StoreError> {
    if n > 0 {
        return Ok(());
    }
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM outbox WHERE account_id = ?1 AND id = ?2",
            params![account, id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(op))?;
    Err(match exists {
        None => StoreError::NotFound { op: op.to_owned() },
        Some(_) => StoreError::LeaseNotHeld {
            op: op.to_owned(),
            holder: holder.to_owned(),
        },
    })
}
