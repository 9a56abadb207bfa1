//! The contract suite against the AWS adapters (DynamoDB, Secrets Manager, EventBridge rules)
//! through the real AWS SDK to moto server (EventBridge Scheduler: `schedules.rs`). Each test
//! has its own table, secret prefix and rule prefix.
//! Needs moto: `infra/moto.sh start` (`infra/test.sh` does it). Fails, never skips, without it.

use std::path::PathBuf;

use connector::domain::{PollInterval, PollRequest, Schedule};
use connector::ports::Store;
use connector::schedules::eventbridge::{EventBridgeSchedules, TARGET_ID};
use connector::store::StoreError;
use connector::store::dynamo::{DynamoStore, TableDefinition};
use e2e::contract::{self, poll_once, ready_to_poll, record};
use e2e::counting::DynamoCounter;
use e2e::env::{POLLER_ARN, moto_config, unique_name};

e2e::contract_tests!(e2e::env::aws;
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

fn repo_file(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(rel)
}

/// Items read and written per poll, counted on the wire by an SDK interceptor.
#[tokio::test]
async fn poll_io_budget() {
    let counter = DynamoCounter::default();
    let c = counter.clone();
    let env = e2e::env::aws_with(move |b| b.interceptor(c)).await;
    let account = ready_to_poll(&*env.store, "measured-1").await;
    counter.take();

    poll_once(&*env.store, &account, &[]).await;
    let idle = counter.take();
    poll_once(
        &*env.store,
        &account,
        &[record(&account, 5, 1, Some("new.1@pec.it"), 11)],
    )
    .await;
    let one_new = counter.take();
    eprintln!("dynamodb poll, nothing new: {idle:?}");
    eprintln!("dynamodb poll, one new message: {one_new:?}");
    // Target: at most 2 item reads and 2 item writes, lease included, when nothing is new.
    assert!(idle.items_read <= 2 && idle.items_written <= 2, "{idle:?}");
    // One new message: the record is two items (by UID, by Message-ID) written with the cursor
    // advance in one transaction.
    assert!(one_new.items_read <= 2, "{one_new:?}");
    assert!(
        one_new.write_requests <= 3 && one_new.items_written <= 5,
        "{one_new:?}"
    );
    // An admin's status read: one item read, nothing written.
    env.store.poll_state(&account).await.unwrap();
    let status = counter.take();
    eprintln!("dynamodb poll state read: {status:?}");
    assert_eq!(
        (
            status.read_requests,
            status.items_read,
            status.write_requests
        ),
        (1, 1, 0),
        "{status:?}"
    );
}

/// The schedule's target input is exactly `events/poll.json`'s shape.
#[tokio::test]
async fn schedule_input_is_the_poll_event() {
    let raw = std::fs::read_to_string(repo_file("events/poll.json")).expect("events/poll.json");
    let event: serde_json::Value = serde_json::from_str(&raw).expect("poll.json is JSON");
    let request: PollRequest = serde_json::from_value(event.clone()).expect("a poll request");

    let conf = moto_config().await;
    let eb = aws_sdk_eventbridge::Client::new(&conf);
    let prefix = unique_name();
    let schedules = EventBridgeSchedules::new(eb.clone(), prefix, POLLER_ARN).unwrap();
    use connector::ports::Schedules;
    schedules
        .put(&Schedule {
            account: request.account_id.clone(),
            interval: PollInterval::minutes(4).unwrap(),
            enabled: true,
        })
        .await
        .unwrap();
    let rule = schedules.rule_name(&request.account_id);
    let described = eb.describe_rule().name(&rule).send().await.unwrap();
    assert_eq!(described.schedule_expression(), Some("rate(4 minutes)"));
    let targets = eb
        .list_targets_by_rule()
        .rule(&rule)
        .send()
        .await
        .unwrap()
        .targets
        .unwrap_or_default();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].id(), TARGET_ID);
    assert_eq!(targets[0].arn(), POLLER_ARN);
    let input: serde_json::Value =
        serde_json::from_str(targets[0].input().expect("input")).unwrap();
    assert_eq!(input, event);
}

/// A table that is not there: typed, named, not worth retrying.
#[tokio::test]
async fn missing_table_is_named() {
    let conf = moto_config().await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), "no-such-table");
    let err = store.list_accounts().await.unwrap_err();
    assert!(
        matches!(err, StoreError::MissingTable { ref table, .. } if table == "no-such-table"),
        "{err:?}"
    );
    assert!(!err.is_transient());
    assert_eq!(
        err.to_string(),
        "cannot list accounts: table no-such-table does not exist"
    );
}

/// A store that does not answer: typed, and worth retrying.
#[tokio::test]
async fn unreachable_store_is_transient() {
    let conf = moto_config().await;
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&conf)
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
            .build(),
    );
    let store = DynamoStore::new(ddb, "any");
    let err = store
        .get_account(&contract::id("acme-1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("read account acme-1"), "{err}");
}

/// `template.yaml` declares the table the code creates and expects.
#[tokio::test]
async fn template_declares_the_same_table() {
    let template = std::fs::read_to_string(repo_file("template.yaml")).expect("template.yaml");
    let squeezed: String = template.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "Transform: AWS::Serverless-2016-10-31".to_owned(),
        "Type: AWS::DynamoDB::Table".to_owned(),
        format!("BillingMode: {}", TableDefinition::BILLING_MODE),
        format!(
            "- AttributeName: {} AttributeType: S - AttributeName: {} AttributeType: S",
            TableDefinition::PARTITION_KEY,
            TableDefinition::SORT_KEY
        ),
        format!(
            "- AttributeName: {} KeyType: HASH - AttributeName: {} KeyType: RANGE",
            TableDefinition::PARTITION_KEY,
            TableDefinition::SORT_KEY
        ),
        format!(
            "PointInTimeRecoveryEnabled: {}",
            TableDefinition::POINT_IN_TIME_RECOVERY
        ),
    ] {
        assert!(squeezed.contains(&needle), "template.yaml lacks {needle:?}");
    }

    // And the table the code creates on moto has that shape.
    let conf = moto_config().await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    let name = unique_name();
    TableDefinition::create(&ddb, &name).await.unwrap();
    let table = ddb
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<(String, String)> = table
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            ("pk".to_owned(), "HASH".to_owned()),
            ("sk".to_owned(), "RANGE".to_owned())
        ]
    );
    let backups = ddb
        .describe_continuous_backups()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let pitr = backups
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str().to_owned());
    assert_eq!(pitr.as_deref(), Some("ENABLED"));
}
