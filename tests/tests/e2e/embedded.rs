//! The contract suite against the embedded adapters (SQLite, owner-only files, in-process
//! scheduler), each test in its own temporary directory.

use connector::store::StoreError;
use connector::store::sqlite::SqliteStore;
use e2e::contract::{self, poll_once, ready_to_poll, record};
use e2e::counting::CountingStore;
use std::sync::Arc;

e2e::contract_tests!(e2e::env::embedded;
    accounts_crud,
    zendesk_instances_crud,
    cursor_is_monotonic_and_conditional,
    message_recorded_once,
    outbound_found_by_either_id,
    outbound_status_is_recorded_and_updated,
    outbound_watermark_only_moves_up,
    ticket_attempt_noted_once,
    outbox_enqueue_claim_complete,
    outbox_enqueued_claimed,
    lease_one_of_twenty_wins,
    lease_expired_can_be_taken_over,
    lease_released_only_by_holder,
    lease_release_keeps_poll_stats,
    poll_state_is_read_without_the_lease,
    missing_account_is_a_typed_error,
    secrets_lifecycle,
    schedules_lifecycle,
    delete_account_leaves_nothing,
);

/// Store calls per poll (the embedded store has no per-item cost; calls are what it does).
#[tokio::test]
async fn poll_store_calls() {
    let env = e2e::env::embedded().await;
    let store = CountingStore::new(Arc::clone(&env.store));
    let account = ready_to_poll(&store, "measured-1").await;
    store.take();

    poll_once(&store, &account, &[]).await;
    let idle = store.take();
    let one = record(&account, 5, 1, Some("new.1@pec.it"), 11);
    poll_once(&store, &account, &[one]).await;
    let one_new = store.take();
    eprintln!("embedded poll, nothing new (store calls): {idle:?}");
    eprintln!("embedded poll, one new message (store calls): {one_new:?}");
    assert!(
        idle.read_requests <= 2 && idle.write_requests <= 2,
        "{idle:?}"
    );
    assert!(
        one_new.read_requests <= 2 && one_new.write_requests <= 3,
        "{one_new:?}"
    );
}

/// The same database file opened twice (two processes) still gives one lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_connections_share_one_lease() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let first = SqliteStore::open(&path).unwrap();
    let second = SqliteStore::open(&path).unwrap();
    use connector::ports::Store;
    first
        .create_account(&contract::account("shared-1"))
        .await
        .unwrap();
    let holder_a = connector::domain::LeaseHolder::parse("a").unwrap();
    let holder_b = connector::domain::LeaseHolder::parse("b").unwrap();
    let id = contract::id("shared-1");
    let t = contract::now();
    let ttl = std::time::Duration::from_secs(60);
    let (ra, rb) = tokio::join!(
        first.take_lease(&id, &holder_a, t, ttl),
        second.take_lease(&id, &holder_b, t, ttl)
    );
    let won = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|o| matches!(o, connector::domain::LeaseOutcome::Acquired(_)))
        .count();
    assert_eq!(won, 1);
}

/// A database whose tables were dropped under the store: a typed, named, permanent error.
#[tokio::test]
async fn missing_table_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE messages; DROP TABLE outbound; DROP TABLE outbox; DROP TABLE accounts;",
        )
        .unwrap();
    use connector::ports::Store;
    let err = store.list_accounts().await.unwrap_err();
    assert!(
        matches!(err, StoreError::MissingTable { ref table, .. } if table == "accounts"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "cannot list accounts: table accounts does not exist"
    );
}

/// A database file from before the outbound `status` column: opening it adds the column, old
/// records read as sent, and new ones keep their status.
#[tokio::test]
async fn outbound_status_column_is_added_to_an_old_file() {
    use connector::domain::{OutboundRecord, SendStatus};
    use connector::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = contract::account("old-1");
    let old = OutboundRecord::sent(
        a.id.clone(),
        contract::mid("old.1@acme.example.it"),
        contract::ticket(5),
        vec![contract::addr("uno@pec.it")],
        contract::now(),
    );
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_account(&a).await.unwrap();
        store.record_outbound(&old).await.unwrap();
    }
    // Back to the old schema.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE outbound DROP COLUMN status;")
        .unwrap();
    let columns = |path: &std::path::Path| -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info('outbound')")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert!(!columns(&path).contains(&"status".to_owned()));

    let store = SqliteStore::open(&path).unwrap();
    assert!(columns(&path).contains(&"status".to_owned()));
    assert_eq!(
        store.find_outbound(&a.id, &old.message_id).await.unwrap(),
        Some(old.clone())
    );
    let new = OutboundRecord::sent(
        a.id.clone(),
        contract::mid("new.1@acme.example.it"),
        contract::ticket(6),
        vec![contract::addr("due@pec.it")],
        contract::now(),
    )
    .with_status(SendStatus::Sending);
    store.record_outbound(&new).await.unwrap();
    assert_eq!(
        store.find_outbound(&a.id, &new.message_id).await.unwrap(),
        Some(new)
    );
    // Opening again leaves the schema as it is.
    drop(store);
    SqliteStore::open(&path).unwrap();
}

/// A database file from before the accounts' `stats` column: opening it adds the column, the
/// cursor is kept, the stats read as empty until a release stores some.
#[tokio::test]
async fn poll_stats_column_is_added_to_an_old_file() {
    use connector::domain::{Cursor, PollStats};
    use connector::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = contract::account("old-3");
    let base = Cursor::first_activation(contract::uv(5), 10);
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_account(&a).await.unwrap();
        let l = contract::lease(&store, &a.id, "setup").await;
        store.advance_cursor(&l, None, &base).await.unwrap();
        store.release_lease(&l).await.unwrap();
    }
    // Back to the old schema.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("ALTER TABLE accounts DROP COLUMN stats;")
        .unwrap();
    let has_column = |path: &std::path::Path| -> bool {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info('accounts') WHERE name = 'stats')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(!has_column(&path));

    let store = SqliteStore::open(&path).unwrap();
    assert!(has_column(&path));
    let l = contract::lease(&store, &a.id, "poller-1").await;
    assert_eq!(l.cursor, Some(base));
    assert_eq!(l.stats, PollStats::default());
    let stats = PollStats {
        last_poll_at: Some(contract::now()),
        tickets_created: 3,
        ..PollStats::default()
    };
    store.release_lease_with(&l, Some(&stats)).await.unwrap();
    let l = contract::lease(&store, &a.id, "poller-2").await;
    assert_eq!(l.stats, stats);
    store.release_lease(&l).await.unwrap();
    // Opening again leaves the schema as it is.
    drop(store);
    SqliteStore::open(&path).unwrap();
}

/// A database file from before registered Zendesk instances: opening it adds the table, and the
/// accounts it held are still there.
#[tokio::test]
async fn zendesk_instances_table_is_added_to_an_old_file() {
    use connector::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let a = contract::account("old-2");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.create_account(&a).await.unwrap();
    }
    // Back to the old schema.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("DROP TABLE zendesk_instances;")
        .unwrap();
    let has_table = |path: &std::path::Path| -> bool {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'zendesk_instances')",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(!has_table(&path));

    let store = SqliteStore::open(&path).unwrap();
    assert!(has_table(&path));
    assert_eq!(store.list_instances().await.unwrap(), vec![]);
    let z = contract::instance("old-zd", "https://old.zendesk.com");
    store.put_instance(&z).await.unwrap();
    assert_eq!(store.list_instances().await.unwrap(), vec![z.clone()]);
    assert_eq!(store.get_account(&a.id).await.unwrap(), Some(a));
    // Opening again keeps what the new table holds.
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_instance(&z.id).await.unwrap(), Some(z));
}
