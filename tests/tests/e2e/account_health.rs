//! Mailbox trouble is recorded on the account, and the admins get one alert ticket per incident,
//! noted when it is over — not one per poll.

use std::time::Duration;

use connector::domain::{Endpoint, ProblemKind, SecretName};
use connector::inbound::Inbound;
use e2e::inbound_env::{InboundEnv, mail};
use secrecy::SecretString;

const WRONG: &str = "Sc4duta-da-3-mesi!";

async fn set_password(env: &InboundEnv, password: &str) {
    env.secrets
        .put(
            &SecretName::AccountPassword(env.account.id.clone()),
            &SecretString::from(password),
        )
        .await
        .expect("store the password");
}

async fn health(env: &InboundEnv) -> Option<connector::domain::AccountProblem> {
    env.store
        .get_account(&env.account.id)
        .await
        .expect("read the account")
        .expect("the account exists")
        .health
        .problem
}

fn alerts(env: &InboundEnv) -> Vec<e2e::inbound_env::TicketView> {
    env.tickets()
        .into_iter()
        .filter(|t| t.has_tag("pec_connector_avviso"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_alerts_once_per_incident_and_the_recovery_is_noted() {
    let env = InboundEnv::new("health-auth").await;
    env.activate().await;
    set_password(&env, WRONG).await;

    for _ in 0..3 {
        let err = env.poll().await.expect_err("the login is refused");
        assert!(err.to_string().contains("refused"), "{err}");
    }
    let problem = health(&env).await.expect("the problem is recorded");
    assert_eq!(problem.kind, ProblemKind::LoginRefused);
    let alerts = alerts(&env);
    assert_eq!(
        alerts.len(),
        1,
        "one alert for the incident, not one per poll"
    );
    let alert = &alerts[0];
    assert_eq!(Some(alert.id), problem.alert_ticket.map(|t| t.get()));
    assert!(
        alert.subject.contains("accesso rifiutato"),
        "{}",
        alert.subject
    );
    assert!(alert.has_tag("pec_connector"));
    assert!(!alert.comments[0].public, "the alert is an internal note");
    assert!(alert.comments[0].html.contains("password"));
    let everything = format!("{alerts:?} {problem:?}");
    assert!(
        !everything.contains(WRONG),
        "the password leaked: {everything}"
    );

    // Messages that arrive meanwhile are not lost.
    env.append(vec![mail::envelope(
        &mail::citizen(1, &env.user).build(),
        "opec-health-1@pec.sandbox.test",
    )])
    .await;
    set_password(&env, "secret").await;
    let outcome = env.poll().await.expect("the login works again");
    assert_eq!(outcome.tickets_created, 1);
    assert_eq!(health(&env).await, None, "the incident is over");
    let alert = env.ticket(alert.id);
    assert_eq!(alert.comments.len(), 2);
    assert!(
        alert.comments[1].html.contains("Risolto"),
        "{:?}",
        alert.comments[1]
    );
    assert!(!alert.comments[1].public);

    // A later, separate incident gets its own alert.
    set_password(&env, WRONG).await;
    env.poll().await.expect_err("refused again");
    assert_eq!(self::alerts(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_alerted_only_after_the_grace_period() {
    let env = InboundEnv::new("health-net").await;
    env.activate().await;
    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut account = env.account.clone();
    account.imap = Endpoint::parse("imap", "127.0.0.1", port).unwrap();
    env.store.update_account(&account).await.unwrap();

    env.poll().await.expect_err("unreachable");
    let problem = health(&env).await.expect("recorded");
    assert_eq!(problem.kind, ProblemKind::Unreachable);
    assert_eq!(problem.alert_ticket, None, "a blip is not alerted");
    assert!(alerts(&env).is_empty());

    // Still down after the grace period: now the admins hear of it, once.
    let impatient = Inbound {
        options: connector::inbound::PollOptions {
            unreachable_grace: Duration::ZERO,
            ..env.inbound.options.clone()
        },
        ..env.inbound.clone()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    impatient
        .poll(&env.account.id, deadline)
        .await
        .expect_err("still unreachable");
    impatient
        .poll(&env.account.id, deadline)
        .await
        .expect_err("still unreachable");
    let alerts = alerts(&env);
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].subject.contains("non è raggiungibile"),
        "{}",
        alerts[0].subject
    );
    let recorded = health(&env).await.unwrap();
    assert_eq!(
        recorded.since, problem.since,
        "one incident from the first failure"
    );
}
