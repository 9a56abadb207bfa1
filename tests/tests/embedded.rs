//! The contract suite against the embedded adapters (SQLite, owner-only files, in-process
//! scheduler), each test in its own temporary directory.

use connector::store::StoreError;
use connector::store::sqlite::SqliteStore;
use e2e::contract::{self, poll_once, ready_to_poll, record};
use e2e::counting::CountingStore;
use std::sync::Arc;

e2e::contract_tests!(e2e::env::embedded;
    accounts_crud,
    cursor_is_monotonic_and_conditional,
    message_recorded_once,
    outbound_found_by_either_id,
    outbox_enqueue_claim_complete,
    lease_one_of_twenty_wins,
    lease_expired_can_be_taken_over,
    lease_released_only_by_holder,
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
