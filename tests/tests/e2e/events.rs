//! Every sample event in `events/` drives its handler, as `cargo lambda invoke --data-file` and
//! `sam local invoke -e` would deliver it: the API Gateway (HTTP API, payload 2.0) events go
//! through `lambda_http`'s own conversion into the api router, and `poll.json` through the
//! poller's handler. The samples carry placeholders where a deployment has secrets
//! (`REPLACE_WITH_...`); the test puts the test deployment's values there, re-signs the webhook
//! calls with a fresh timestamp, and points the registration at the test mail servers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::admin_env::{ADMIN_TOKEN, AdminEnv};
use e2e::inbound_env::{PASSWORD, smtp_server};
use e2e::outbound_env::sign;
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

fn event(name: &str) -> Value {
    let path = events_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn body_of(e: &Value) -> Value {
    serde_json::from_str(e["body"].as_str().expect("a body")).expect("a JSON body")
}

/// Sends an API Gateway event through lambda_http's conversion to the router.
async fn drive(env: &AdminEnv, e: &Value) -> (u16, Value) {
    let request = lambda_http::request::from_str(&e.to_string()).expect("an API Gateway event");
    let response = env
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An admin event with the test deployment's admin token.
fn admin_event(name: &str) -> Value {
    let mut e = event(name);
    assert_eq!(
        e["headers"]["authorization"], "Bearer REPLACE_WITH_ADMIN_TOKEN",
        "{name} shows where the admin token goes"
    );
    e["headers"]["authorization"] = json!(format!("Bearer {ADMIN_TOKEN}"));
    e
}

/// A webhook event for `ticket`, signed now with the deployment's webhook secrets.
fn webhook_event(env: &AdminEnv, name: &str, ticket: u64) -> Value {
    let mut e = event(name);
    assert_eq!(
        e["headers"]["x-zendesk-webhook-signature"],
        "REPLACE_WITH_SIGNATURE"
    );
    let mut body = body_of(&e);
    body["ticket_id"] = json!(ticket.to_string());
    let body = body.to_string();
    let webhook = env.sim.webhooks().remove(0);
    let signing = env.sim.webhook_signing_secret(&webhook.id).unwrap();
    let bearer = webhook.authentication.as_ref().unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let h = &mut e["headers"];
    h["authorization"] = json!(format!("Bearer {bearer}"));
    h["x-zendesk-webhook-signature"] = json!(sign(&signing, &ts, body.as_bytes()));
    h["x-zendesk-webhook-signature-timestamp"] = json!(ts);
    e["body"] = json!(body);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_drives_its_handler() {
    let mut names: Vec<String> = std::fs::read_dir(events_dir())
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let driven = [
        "admin-delete.json",
        "admin-list.json",
        "admin-poll-now.json",
        "admin-register.json",
        "admin-show.json",
        "admin-update.json",
        "health.json",
        "poll.json",
        "webhook-public-reply.json",
        "webhook-template-send.json",
    ];
    assert_eq!(names, driven, "every file in events/ is driven below");

    let env = AdminEnv::new().await;
    let (status, body) = drive(&env, &event("health.json")).await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    // Register "aruba-1" as the sample does, against the test mail servers.
    let mut e = admin_event("admin-register.json");
    let mut reg = body_of(&e);
    assert_eq!(reg["provider"], "aruba");
    assert_eq!(reg["id"], "aruba-1");
    let (smtp_host, smtp_port) = smtp_server();
    let o = reg.as_object_mut().unwrap();
    o.remove("provider");
    o.insert("password".into(), json!(PASSWORD));
    o.insert("imap_host".into(), json!(env.dovecot.host));
    o.insert("imap_port".into(), json!(env.dovecot.port));
    o.insert("smtp_host".into(), json!(smtp_host));
    o.insert("smtp_port".into(), json!(smtp_port));
    e["body"] = json!(reg.to_string());
    let (status, account) = drive(&env, &e).await;
    assert!(status == 201 || status == 200, "{status} {account}");
    assert_eq!(account["id"], "aruba-1");

    let (status, list) = drive(&env, &admin_event("admin-list.json")).await;
    assert_eq!(status, 200);
    assert_eq!(list["accounts"][0]["id"], "aruba-1");
    let (status, shown) = drive(&env, &admin_event("admin-show.json")).await;
    assert_eq!((status, &shown["address"]), (200, &account["address"]));
    let (status, changed) = drive(&env, &admin_event("admin-update.json")).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["poll_interval_minutes"], 5);

    // The scheduled poll (the schedule's input, as EventBridge delivers it).
    let poll = event("poll.json");
    let mut context = lambda_runtime::Context::default();
    context.deadline = (std::time::SystemTime::now() + Duration::from_secs(30))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let polled = poller::handle(
        &env.inbound,
        None,
        lambda_runtime::LambdaEvent::new(poll, context),
    )
    .await
    .expect("the poll event");
    assert!(matches!(polled, poller::Response::Polled(_)), "{polled:?}");

    // Zendesk's two webhook calls, on a ticket of the account (its tag) with a public agent
    // reply.
    let deadline = || Instant::now() + Duration::from_secs(10);
    let account_tag = format!(
        "pec_connector_{}",
        account["address"].as_str().unwrap().replace('@', "")
    );
    let ticket = env
        .zendesk
        .create_ticket(
            &zendesk::NewTicket {
                subject: "Richiesta di accesso agli atti".to_owned(),
                requester: zendesk::Requester {
                    email: "mario.rossi@pec.cittadino.it".to_owned(),
                    name: Some("Mario Rossi".to_owned()),
                },
                comment: zendesk::Comment::internal_note("<p>Aperta.</p>"),
                external_id: None,
                tags: vec![account_tag],
                custom_fields: Vec::new(),
            },
            "events-ticket",
            deadline(),
        )
        .await
        .unwrap()
        .id
        .0;
    let (status, sent) = drive(
        &env,
        &webhook_event(&env, "webhook-template-send.json", ticket),
    )
    .await;
    assert_eq!((status, &sent["status"]), (200, &json!("sent")), "{sent}");
    env.zendesk
        .add_comment(
            zendesk::TicketId(ticket),
            &zendesk::Comment {
                html_body: "<p>Ecco il provvedimento.</p>".to_owned(),
                public: true,
                uploads: Vec::new(),
                author_id: None,
            },
            deadline(),
        )
        .await
        .unwrap();
    let (status, replied) = drive(
        &env,
        &webhook_event(&env, "webhook-public-reply.json", ticket),
    )
    .await;
    assert_eq!(
        (status, &replied["status"]),
        (200, &json!("sent")),
        "{replied}"
    );

    let (status, outcome) = drive(&env, &admin_event("admin-poll-now.json")).await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["busy"], false);
    let (status, _) = drive(&env, &admin_event("admin-delete.json")).await;
    assert_eq!(status, 204);
    let (status, gone) = drive(&env, &admin_event("admin-show.json")).await;
    assert_eq!(status, 404, "{gone}");
}
