//! The poller Lambda's handler driven with the sample events in `events/`, as
//! `cargo lambda invoke --data-file` and `sam local invoke -e` would send them.

use std::time::{SystemTime, UNIX_EPOCH};

use connector::domain::SecretName;
use e2e::inbound_env::{EnvOptions, InboundEnv, mail};
use lambda_runtime::{Context, LambdaEvent};
use poller::Response;
use secrecy::SecretString;
use serde_json::Value;

fn event_file(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An invocation context whose deadline is `seconds` from now, as the Lambda runtime gives it.
fn context(seconds: u64) -> Context {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut context = Context::default();
    context.request_id = "test-invocation".to_owned();
    context.deadline = now_ms + seconds * 1000;
    context
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_poll_event_drives_the_poller() {
    let event = event_file("poll.json");
    let account = poller::account_of(&event).expect("events/poll.json names an account");
    let env = InboundEnv::with(
        "poller",
        EnvOptions {
            account_id: Some(account.as_str().to_owned()),
            ..EnvOptions::default()
        },
    )
    .await;

    // First invocation: activation, nothing imported.
    let first = poller::handle(
        &env.inbound,
        None,
        LambdaEvent::new(event.clone(), context(30)),
    )
    .await
    .expect("first invocation");
    let Response::Polled(first) = first else {
        panic!("{first:?}")
    };
    assert!(first.baseline, "{first:?}");

    env.append(vec![mail::envelope(
        &mail::citizen(1, &env.user).build(),
        "opec-poller-1@pec.sandbox.test",
    )])
    .await;
    let second = poller::handle(
        &env.inbound,
        None,
        LambdaEvent::new(event.clone(), context(30)),
    )
    .await
    .expect("second invocation");
    let Response::Polled(second) = second else {
        panic!("{second:?}")
    };
    assert_eq!(second.tickets_created, 1, "{second:?}");
    assert_eq!(env.tickets().len(), 1);

    // A refused password is the admins' to fix: answered (and alerted once), not an error.
    env.secrets
        .put(
            &SecretName::AccountPassword(env.account.id.clone()),
            &SecretString::from("scaduta"),
        )
        .await
        .unwrap();
    let third = poller::handle(&env.inbound, None, LambdaEvent::new(event, context(30)))
        .await
        .expect("a mailbox problem is not an invocation error");
    let Response::MailboxProblem(problem) = third else {
        panic!("{third:?}")
    };
    assert!(problem.contains("refused"), "{problem}");
    assert!(!problem.contains("scaduta"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_event_is_refused_with_a_clear_error() {
    let env = InboundEnv::new("poller-bad").await;
    let err = poller::handle(
        &env.inbound,
        None,
        LambdaEvent::new(serde_json::json!({"foo": 1}), context(5)),
    )
    .await
    .expect_err("no account in the event");
    assert!(err.to_string().contains("account_id"), "{err}");
    let err = poller::handle(
        &env.inbound,
        None,
        LambdaEvent::new(serde_json::json!({"account_id": "nobody"}), context(5)),
    )
    .await
    .expect_err("unknown account");
    assert!(
        err.to_string().contains("account nobody: not found"),
        "{err}"
    );
}
