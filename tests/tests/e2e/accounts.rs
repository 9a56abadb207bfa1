//! Acceptance tests of the Accounts issue: the admin API through the api router, against the
//! AWS adapters on moto, the Zendesk simulator and the real Dovecot and SMTP test servers.
//! Needs moto, Dovecot and the SMTP test server (infra/test.sh starts them).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector::domain::{AccountId, Lease, LeaseHolder, LeaseOutcome};
use connector::inbound::Inbound;
use connector::ports::Store;
use e2e::admin_env::{ADMIN_TOKEN, AdminEnv, WEBHOOK_URL};
use e2e::counting::CountingStore;
use e2e::inbound_env::{PASSWORD, mail};
use serde_json::{Value, json};

fn titles(env: &AdminEnv) -> BTreeSet<String> {
    env.sim.triggers().into_iter().map(|t| t.title).collect()
}

/// Counts of what the connector made in Zendesk: webhooks, categories, triggers.
fn counts(env: &AdminEnv) -> (usize, usize, usize) {
    (
        env.sim.webhooks().len(),
        env.sim.trigger_categories().len(),
        env.sim.triggers().len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_creates_the_secret_account_schedule_webhook_category_and_triggers() {
    let env = AdminEnv::new().await;
    let address = env.new_address("reg");
    let answer = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let id = answer.body["id"].as_str().unwrap().to_owned();
    let no_at = address.replace('@', "");
    assert_eq!(answer.body["address"], address.as_str());
    assert_eq!(answer.body["poll_interval_minutes"], 2);
    assert_eq!(
        answer.body["status"]["activated"], true,
        "baseline recorded"
    );
    assert!(
        !answer.body.to_string().contains(PASSWORD),
        "no secret in the answer"
    );

    // The secret, the account, the schedule.
    let secrets = env.env.raw.secrets().await;
    for name in ["account/", "webhook-bearer-token", "webhook-signing-secret"] {
        assert!(
            secrets.iter().any(|s| s.contains(name)),
            "{name} in {secrets:?}"
        );
    }
    let state = env.env.raw.state().await.join("\n");
    assert!(state.contains(&address), "the account is stored");
    let schedules = env.env.raw.schedules().await;
    assert_eq!(schedules.len(), 1, "{schedules:?}");
    assert!(schedules[0].contains("rate(2 minutes)"), "{schedules:?}");
    assert!(
        schedules[0].contains(&format!("{{\"account_id\":\"{id}\"}}"))
            || schedules[0].contains(&format!("\\\"account_id\\\":\\\"{id}\\\"")),
        "the target carries the account input: {schedules:?}"
    );

    // Zendesk: one webhook with our URL and bearer token, one category, two triggers.
    let webhooks = env.sim.webhooks();
    assert_eq!(webhooks.len(), 1);
    let w = &webhooks[0];
    assert_eq!(
        (w.name.as_str(), w.endpoint.as_str()),
        ("PEC Connector", WEBHOOK_URL)
    );
    assert_eq!(
        w.subscriptions,
        vec!["conditional_ticket_events".to_owned()]
    );
    let auth = w.authentication.as_ref().expect("bearer token");
    assert_eq!(auth["type"], "bearer_token");
    let categories = env.sim.trigger_categories();
    assert_eq!(categories.len(), 1);
    assert_eq!(categories[0].name, "PEC Connector");
    assert_eq!(
        titles(&env),
        BTreeSet::from([
            format!("Reply by PEC Connector [{address}]"),
            format!("Public reply by PEC Connector [{address}]"),
        ])
    );
    let reply = env
        .sim
        .triggers()
        .into_iter()
        .find(|t| t.title.starts_with("Reply by"))
        .unwrap();
    assert_eq!(
        reply.category_id.as_deref(),
        Some(categories[0].id.as_str())
    );
    assert_eq!(
        reply.all,
        vec![
            json!({"field": "current_tags", "operator": "includes", "value": format!("pec_connector_reply_{no_at}")})
        ]
    );
    assert_eq!(reply.actions.len(), 3);
    assert_eq!(reply.actions[0]["field"], "notification_webhook");
    assert_eq!(reply.actions[0]["value"][0], w.id.as_str());
    let body: Value = serde_json::from_str(reply.actions[0]["value"][1].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"account": id, "ticket_id": "{{ticket.id}}", "requester": "{{ticket.requester.email}}",
               "subject": "{{ticket.title}}", "message": "{{ticket.latest_comment_html}}",
               "updated_at": "{{ticket.updated_at_with_timestamp}}"})
    );
    assert_eq!(
        reply.actions[1],
        json!({"field": "remove_tags", "value": format!("pec_connector_reply_{no_at}")})
    );
    assert_eq!(
        reply.actions[2],
        json!({"field": "current_tags", "value": "pec_connector"}),
        "a ticket a template PEC left from is a PEC ticket for the guard"
    );
    assert_eq!(answer.body["zendesk"]["reply_trigger_id"], reply.id);
    assert_eq!(answer.body["zendesk"]["webhook_id"], w.id.as_str());

    // The signing secret the connector keeps is the webhook's: a signed call is accepted.
    let signing = env.sim.webhook_signing_secret(&w.id).unwrap();
    let bearer = auth["data"]["token"].as_str().unwrap().to_owned();
    let ticket = agent_ticket(&env).await;
    let call_body =
        json!({"account": id, "ticket_id": ticket.to_string(), "requester": mail::CITIZEN,
                           "subject": "Prova", "message": "Testo"})
        .to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let headers = vec![
        ("Authorization".to_owned(), format!("Bearer {bearer}")),
        (
            "X-Zendesk-Webhook-Signature".to_owned(),
            e2e::outbound_env::sign(&signing, &ts, call_body.as_bytes()),
        ),
        ("X-Zendesk-Webhook-Signature-Timestamp".to_owned(), ts),
    ];
    let sent = e2e::outbound_env::call(
        &env.router,
        "POST",
        api::WEBHOOK_PATH,
        headers,
        call_body.into_bytes(),
    )
    .await;
    assert_eq!(sent.status, 200, "{sent:?}");
    assert_eq!(sent.body["status"], "sent", "{sent:?}");
}

/// A ticket an agent opened.
async fn agent_ticket(env: &AdminEnv) -> u64 {
    let t = env
        .zendesk
        .create_ticket(
            &zendesk::NewTicket {
                subject: "Pratica".to_owned(),
                requester: zendesk::Requester {
                    email: mail::CITIZEN.to_owned(),
                    name: None,
                },
                comment: zendesk::Comment::internal_note("<p>Aperta.</p>"),
                external_id: None,
                tags: Vec::new(),
                custom_fields: Vec::new(),
            },
            "admin-test-ticket",
            std::time::Instant::now() + std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    t.id.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_again_and_patching_change_objects_in_place_and_keep_what_admins_added() {
    let env = AdminEnv::new().await;
    let address = env.new_address("again");
    let first = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let id = first.body["id"].as_str().unwrap().to_owned();
    let before = counts(&env);
    assert_eq!(before, (1, 1, 2));

    let again = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["id"], id.as_str());
    assert_eq!(counts(&env), before, "same address: nothing new");
    assert_eq!(env.env.raw.schedules().await.len(), 1);

    // An admin enriches the reply trigger by hand.
    let reply_id = first.body["zendesk"]["reply_trigger_id"].as_u64().unwrap();
    assert!(env.sim.edit_trigger(reply_id, |t| {
        t.all
            .push(json!({"field": "status", "operator": "less_than", "value": "solved"}));
        t.actions
            .push(json!({"field": "status", "value": "solved"}));
    }));

    let patched = env
        .admin(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&json!({"subject_template": "Risposta: {{ticket.title}}", "message_template": "<p>{{ticket.latest_comment_html}}</p>", "poll_interval_minutes": 5})),
        )
        .await;
    assert_eq!(patched.status, 200, "{patched:?}");
    assert_eq!(patched.body["poll_interval_minutes"], 5);
    assert_eq!(counts(&env), before, "PATCH changes in place");
    let reply = env.sim.trigger(reply_id).unwrap();
    assert!(
        reply
            .all
            .contains(&json!({"field": "status", "operator": "less_than", "value": "solved"})),
        "the admin's condition survives: {:?}",
        reply.all
    );
    assert!(
        reply
            .actions
            .contains(&json!({"field": "status", "value": "solved"})),
        "the admin's action survives: {:?}",
        reply.actions
    );
    let body: Value = serde_json::from_str(reply.actions[0]["value"][1].as_str().unwrap()).unwrap();
    assert_eq!(body["subject"], "Risposta: {{ticket.title}}");
    let calls = reply
        .actions
        .iter()
        .filter(|a| a["field"] == "notification_webhook")
        .count();
    assert_eq!(calls, 1, "our webhook call replaced, not added");
    let schedules = env.env.raw.schedules().await;
    assert_eq!(schedules.len(), 1);
    assert!(schedules[0].contains("rate(5 minutes)"), "{schedules:?}");

    // A new password is checked by logging in: a wrong one is refused, nothing changes.
    let wrong = env
        .admin(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&json!({"password": "sbagliata"})),
        )
        .await;
    assert_eq!(wrong.status, 422, "{wrong:?}");
    assert_eq!(wrong.body["field"], "password");
    let right = env
        .admin(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(right.status, 200, "{right:?}");
    assert_eq!(right.body["status"]["password_age_days"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_precisely_and_create_nothing() {
    let env = AdminEnv::new().await;
    let address = env.new_address("bad");
    let good = env.registration(&address);
    let with = |k: &str, v: Value| {
        let mut b = good.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("password", json!("sbagliata")), 422, "password"),
        (with("imap_port", json!(1)), 422, "imap_host"),
        (with("address", json!("non-un-indirizzo")), 422, "address"),
        (with("imap_port", json!(0)), 422, "imap_port"),
        (
            with("poll_interval_minutes", json!(0)),
            422,
            "poll_interval_minutes",
        ),
        (with("provider", json!("gmail")), 422, "provider"),
        (with("smtp_port", json!(1)), 422, "smtp_host"),
    ];
    for (body, status, field) in &cases {
        let a = env.admin("POST", "/accounts", Some(body)).await;
        assert_eq!(a.status, *status, "{body}: {a:?}");
        assert_eq!(a.body["field"], *field, "{body}: {a:?}");
        assert!(!a.error().is_empty());
        assert!(
            !a.body.to_string().contains("sbagliata"),
            "never echo a password"
        );
    }
    let a = env
        .admin(
            "POST",
            "/accounts",
            Some(&with("password", json!("sbagliata"))),
        )
        .await;
    assert!(a.error().contains("app password"), "explains 2FA: {a:?}");
    let a = env.admin_with("POST", "/accounts", Some(&good), None).await;
    assert_eq!(
        (a.status, a.error().starts_with("missing admin token")),
        (401, true),
        "{a:?}"
    );
    let a = env
        .admin_with("POST", "/accounts", Some(&good), Some("not-the-token"))
        .await;
    assert_eq!((a.status, a.error()), (401, "wrong admin token"));
    for (method, path) in [
        ("GET", "/accounts"),
        ("GET", "/accounts/x"),
        ("DELETE", "/accounts/x"),
        ("POST", "/accounts/x/poll"),
    ] {
        let a = env.admin_with(method, path, None, None).await;
        assert_eq!(a.status, 401, "{method} {path}: {a:?}");
    }

    assert!(env.env.raw.state().await.is_empty(), "no state");
    assert!(env.env.raw.secrets().await.is_empty(), "no secret");
    assert!(env.env.raw.schedules().await.is_empty(), "no schedule");
    assert_eq!(counts(&env), (0, 0, 0), "nothing in Zendesk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_leaves_nothing_behind_and_the_webhook_goes_with_the_last_account() {
    let env = AdminEnv::new().await;
    let (a, b) = (env.new_address("del-a"), env.new_address("del-b"));
    let ra = env
        .admin("POST", "/accounts", Some(&env.registration(&a)))
        .await;
    let rb = env
        .admin("POST", "/accounts", Some(&env.registration(&b)))
        .await;
    assert_eq!((ra.status, rb.status), (201, 201));
    assert_eq!(counts(&env), (1, 1, 4), "one webhook and category for both");
    let (ia, ib) = (
        ra.body["id"].as_str().unwrap().to_owned(),
        rb.body["id"].as_str().unwrap().to_owned(),
    );

    let d = env.admin("DELETE", &format!("/accounts/{ia}"), None).await;
    assert_eq!(d.status, 204, "{d:?}");
    assert_eq!(
        counts(&env),
        (1, 1, 2),
        "b's triggers and the shared objects stay"
    );
    assert!(titles(&env).iter().all(|t| t.contains(&b)));
    assert_eq!(
        env.admin("GET", &format!("/accounts/{ia}"), None)
            .await
            .status,
        404
    );
    let list = env.admin("GET", "/accounts", None).await;
    assert_eq!(list.body["accounts"].as_array().unwrap().len(), 1);

    let d = env.admin("DELETE", &format!("/accounts/{ib}"), None).await;
    assert_eq!(d.status, 204, "{d:?}");
    assert_eq!(counts(&env), (0, 0, 0), "nothing left in Zendesk");
    assert!(
        env.env.raw.state().await.is_empty(),
        "{:?}",
        env.env.raw.state().await
    );
    assert!(
        env.env.raw.secrets().await.is_empty(),
        "{:?}",
        env.env.raw.secrets().await
    );
    assert!(env.env.raw.schedules().await.is_empty());
    assert_eq!(
        env.admin("DELETE", &format!("/accounts/{ib}"), None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_poll_now_and_no_secret_anywhere() {
    let env = AdminEnv::new().await;
    let address = env.new_address("status");
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    // Not polled yet: no poll stats.
    assert!(r.body["status"]["last_poll_at"].is_null(), "{r:?}");
    assert_eq!(r.body["status"]["counts"]["tickets_created"], 0, "{r:?}");

    // Already there before registration? No: after. A PEC arriving now is imported by "poll now".
    let original = mail::citizen(1, &address).build();
    env.dovecot.append_blocking(
        &address,
        &[mail::envelope(&original, "opec-admin-1@pec.sandbox.test")],
    );
    let polled = env
        .admin("POST", &format!("/accounts/{id}/poll"), None)
        .await;
    assert_eq!(polled.status, 200, "{polled:?}");
    assert_eq!(polled.body["tickets_created"], 1, "{polled:?}");
    assert_eq!(polled.body["baseline"], false);
    let shown = env.admin("GET", &format!("/accounts/{id}"), None).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["status"]["mailbox"], "ok");
    assert!(shown.body["status"]["last_uid"].as_u64().unwrap() >= 1);
    // The poll's stats, kept by its lease release.
    let status = &shown.body["status"];
    assert!(status["last_poll_at"].is_string(), "{status}");
    assert!(status["last_success_at"].is_string(), "{status}");
    assert_eq!(
        status["last_poll_at"], status["last_success_at"],
        "{status}"
    );
    assert!(status["last_poll_error"].is_null(), "{status}");
    assert_eq!(status["counts"]["tickets_created"], 1, "{status}");
    assert_eq!(status["counts"]["comments_added"], 0, "{status}");
    assert_eq!(status["counts"]["unreadable"], 0, "{status}");

    // No secret in any answer, table item or secret name.
    let webhook = &env.sim.webhooks()[0];
    let secrets = [
        PASSWORD.to_owned(),
        ADMIN_TOKEN.to_owned(),
        env.sim.credentials().api_token.clone(),
        env.sim.webhook_signing_secret(&webhook.id).unwrap(),
        webhook.authentication.as_ref().unwrap()["data"]["token"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    let mut seen = vec![
        r.body.to_string(),
        polled.body.to_string(),
        shown.body.to_string(),
    ];
    seen.push(env.admin("GET", "/accounts", None).await.body.to_string());
    seen.extend(env.env.raw.state().await);
    seen.extend(env.env.raw.secrets().await);
    seen.extend(env.env.raw.schedules().await);
    // The test servers' password is the word "secret": look for it as a value, not inside
    // names such as `password_secret`.
    for s in &secrets {
        let forms = if s == PASSWORD {
            vec![format!("\"{s}\""), format!("S(\"{s}\")")]
        } else {
            vec![s.clone()]
        };
        for text in &seen {
            for form in &forms {
                assert!(!text.contains(form.as_str()), "a secret leaked into {text}");
            }
        }
    }
}

/// `GET /accounts` and `GET /accounts/{id}` read the poll state as stored: while a poll holds
/// the account's lease they show its cursor and stats, write nothing, and the lease stays with
/// the poll, until the same expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_accounts_shows_a_running_polls_state_and_leaves_its_lease_alone() {
    let env = AdminEnv::new().await;
    let address = env.new_address("lettura");
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let original = mail::citizen(1, &address).build();
    env.dovecot.append_blocking(
        &address,
        &[mail::envelope(&original, "opec-lettura-1@pec.sandbox.test")],
    );
    let polled = env
        .admin("POST", &format!("/accounts/{id}/poll"), None)
        .await;
    assert_eq!(polled.body["tickets_created"], 1, "{polled:?}");

    // The next poll is running: it holds the lease.
    let account = AccountId::parse(&id).unwrap();
    let store = &env.env.store;
    let holder = LeaseHolder::unique("poll");
    let ttl = Duration::from_secs(60);
    let LeaseOutcome::Acquired(lease) = store
        .take_lease(&account, &holder, chrono::Utc::now(), ttl)
        .await
        .unwrap()
    else {
        panic!("the lease is free");
    };
    let before = env.env.raw.state().await;
    let listed = env.admin("GET", "/accounts", None).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let shown = env.admin("GET", &format!("/accounts/{id}"), None).await;
    assert_eq!(shown.status, 200, "{shown:?}");
    for status in [&listed.body["accounts"][0]["status"], &shown.body["status"]] {
        assert_eq!(status["activated"], true, "{status}");
        assert!(status["last_uid"].as_u64().unwrap() >= 1, "{status}");
        assert!(status["last_success_at"].is_string(), "{status}");
        assert_eq!(status["counts"]["tickets_created"], 1, "{status}");
    }
    assert_eq!(env.env.raw.state().await, before, "reading wrote nothing");
    match store
        .take_lease(
            &account,
            &LeaseHolder::unique("other"),
            chrono::Utc::now(),
            ttl,
        )
        .await
        .unwrap()
    {
        LeaseOutcome::Held {
            holder: h,
            expires_at,
        } => {
            assert_eq!(
                (h, expires_at),
                (holder, lease.expires_at),
                "the lease is the poll's"
            );
        }
        other => panic!("the poll's lease was lost: {other:?}"),
    }
    store
        .release_lease(&lease)
        .await
        .expect("the poll still holds its lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_names_every_route_and_field() {
    let env = AdminEnv::new().await;
    let doc = env.admin("GET", "/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let paths = doc.body["paths"].as_object().unwrap();
    let mut routes = 0;
    for (path, item) in paths {
        for method in ["get", "post", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            routes += 1;
            let concrete = path
                .replace("{id}", "nessuno")
                .replace("{instance}", "nessuno");
            let a = env
                .admin(&method.to_uppercase(), &concrete, Some(&json!({})))
                .await;
            assert_ne!(a.error(), "no such route", "{method} {path} is routed");
            assert_ne!(a.status, 405, "{method} {path}: {a:?}");
        }
    }
    assert_eq!(routes, 15);
    let a = env.admin("GET", "/undocumented", None).await;
    assert_eq!((a.status, a.error()), (404, "no such route"));
    // Every documented registration field is one the API accepts (none is "unknown").
    let props = doc.body["components"]["schemas"]["Registration"]["properties"]
        .as_object()
        .unwrap();
    for field in props.keys() {
        let a = env
            .admin("POST", "/accounts", Some(&json!({ field: null })))
            .await;
        assert!(
            !a.error().contains("unknown field"),
            "{field} is documented but refused: {a:?}"
        );
    }
    let a = env
        .admin("POST", "/accounts", Some(&json!({"colore": "blu"})))
        .await;
    assert!(a.error().contains("unknown field"), "{a:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarding_standard_notifications_is_optional_and_undone_with_the_last_account() {
    let env = AdminEnv::new().await;
    let deadline = || std::time::Instant::now() + std::time::Duration::from_secs(10);
    let standard = |title: &str, to: &str| zendesk::TriggerSpec {
        title: title.to_owned(),
        active: true,
        category_id: None,
        conditions: zendesk::Conditions {
            all: vec![zendesk::Condition::new("update_type", "is", "Change")],
            any: Vec::new(),
        },
        actions: vec![zendesk::TriggerAction::new(
            "notification_user",
            json!([
                to,
                "[{{ticket.account}}] Re: {{ticket.title}}",
                "{{ticket.comments_formatted}}"
            ]),
        )],
        description: None,
    };
    let requester = env
        .zendesk
        .create_trigger(
            &standard(
                "Notify requester and CCs of comment update",
                "requester_and_ccs",
            ),
            deadline(),
        )
        .await
        .unwrap();
    let assignee = env
        .zendesk
        .create_trigger(
            &standard("Notify assignee of comment update", "assignee_id"),
            deadline(),
        )
        .await
        .unwrap();
    // The guard: tags contain none of pec_connector and the accounts' reply tags.
    let is_guard = |c: &Value| {
        c["field"] == "current_tags"
            && c["operator"] == "not_includes"
            && c["value"]
                .as_str()
                .is_some_and(|v| v.split(' ').next() == Some("pec_connector"))
    };
    let reply_tag = |address: &str| format!("pec_connector_reply_{}", address.replace('@', ""));

    // Off by default.
    let a = env.new_address("guard-a");
    assert_eq!(
        env.admin("POST", "/accounts", Some(&env.registration(&a)))
            .await
            .status,
        201
    );
    assert!(
        !env.sim
            .trigger(requester.id)
            .unwrap()
            .all
            .iter()
            .any(is_guard)
    );
    // Asked for: only the requester notification gets the condition, once.
    let b = env.new_address("guard-b");
    let mut body = env.registration(&b);
    body["guard_notifications"] = json!(true);
    let rb = env.admin("POST", "/accounts", Some(&body)).await;
    assert_eq!(rb.status, 201, "{rb:?}");
    assert_eq!(
        env.admin("POST", "/accounts", Some(&body)).await.status,
        200
    );
    let guarded = env.sim.trigger(requester.id).unwrap();
    assert_eq!(
        guarded.all.iter().filter(|c| is_guard(c)).count(),
        1,
        "{:?}",
        guarded.all
    );
    let value = guarded.all.iter().find(|c| is_guard(c)).unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    for tag in [reply_tag(&a), reply_tag(&b)] {
        assert!(value.split(' ').any(|t| t == tag), "{value} names {tag}");
    }
    assert!(
        guarded
            .all
            .contains(&json!({"field": "update_type", "operator": "is", "value": "Change"}))
    );
    assert!(
        !env.sim
            .trigger(assignee.id)
            .unwrap()
            .all
            .iter()
            .any(is_guard)
    );
    // The connector's own triggers are left alone.
    for t in env.sim.triggers() {
        if t.title.contains("PEC Connector") {
            assert!(!t.all.iter().any(is_guard), "{}", t.title);
        }
    }
    // With the last account gone, Zendesk's triggers are as they were.
    for r in env.admin("GET", "/accounts", None).await.body["accounts"]
        .as_array()
        .unwrap()
    {
        let id = r["id"].as_str().unwrap();
        assert_eq!(
            env.admin("DELETE", &format!("/accounts/{id}"), None)
                .await
                .status,
            204
        );
    }
    assert!(
        !env.sim
            .trigger(requester.id)
            .unwrap()
            .all
            .iter()
            .any(is_guard)
    );
    assert_eq!(
        env.sim.triggers().len(),
        2,
        "only Zendesk's own triggers remain"
    );
}

/// A registration whose account is polled at the moment it is created: a store on which an
/// account's creation runs `hook` (with the store as it is) before returning.
async fn env_with_create_hook(
    hook: impl Fn(Arc<dyn Store>, AccountId) -> HookFuture + Send + Sync + 'static,
    lease_wait: Option<Duration>,
) -> AdminEnv {
    AdminEnv::with(
        move |store| {
            let inner = store.clone();
            Arc::new(
                CountingStore::new(store).after_create(Box::new(move |id| hook(inner.clone(), id))),
            )
        },
        |options| {
            if let Some(wait) = lease_wait {
                options.lease_wait = wait;
            }
        },
    )
    .await
}

type HookFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A PEC from citizen `n` in `address`'s mailbox.
fn arrives(env: &AdminEnv, address: &str, n: u32) {
    let original = mail::citizen(n, address).build();
    env.dovecot.append_blocking(
        address,
        &[mail::envelope(
            &original,
            &format!("opec-base-{n}@pec.sandbox.test"),
        )],
    );
}

/// Polls now and returns the subjects of every ticket in Zendesk.
async fn poll_and_subjects(env: &AdminEnv, id: &str) -> Vec<String> {
    let polled = env
        .admin("POST", &format!("/accounts/{id}/poll"), None)
        .await;
    assert_eq!(polled.status, 200, "{polled:?}");
    let mut subjects: Vec<String> = env.sim.tickets().into_iter().map(|t| t.subject).collect();
    subjects.sort();
    subjects
}

/// Taking the lease as another run would, for `ttl`.
async fn hold(store: &dyn Store, id: &AccountId, ttl: Duration) -> Lease {
    match store
        .take_lease(id, &LeaseHolder::unique("poll"), chrono::Utc::now(), ttl)
        .await
        .unwrap()
    {
        LeaseOutcome::Acquired(lease) => lease,
        other => panic!("{other:?}"),
    }
}

/// A run holds the new account's lease when registration comes to record the baseline: the
/// registration waits for it and records the baseline it saw. What was there before is never
/// imported; what arrives after registration is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_waits_for_a_held_lease_to_record_the_baseline() {
    let env = env_with_create_hook(
        |store, id| {
            Box::pin(async move {
                let lease = hold(&*store, &id, Duration::from_secs(60)).await;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    store.release_lease(&lease).await.unwrap();
                });
            })
        },
        None,
    )
    .await;
    let address = env.new_address("attesa");
    arrives(&env, &address, 1);
    let started = Instant::now();
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited"
    );
    assert_eq!(r.body["status"]["activated"], true, "{r:?}");
    assert_eq!(r.body["status"]["last_uid"], 1, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();

    arrives(&env, &address, 2);
    assert_eq!(
        poll_and_subjects(&env, &id).await,
        ["Richiesta n. 2 di accesso agli atti"],
        "only what arrived after registration"
    );
}

/// A poll runs to its end as the account is created: its first-activation baseline stands, and
/// still nothing that was there at registration is imported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_before_the_registrations_baseline_imports_nothing_already_there() {
    let poller: Arc<std::sync::OnceLock<Arc<Inbound>>> = Arc::default();
    let env = env_with_create_hook(
        {
            let poller = poller.clone();
            move |_, id| {
                let poller = poller.clone();
                Box::pin(async move {
                    let inbound = poller.get().expect("the poller").clone();
                    let outcome = inbound
                        .poll(&id, Instant::now() + Duration::from_secs(20))
                        .await
                        .unwrap();
                    assert!(outcome.baseline, "{outcome:?}");
                })
            }
        },
        None,
    )
    .await;
    poller.set(env.inbound.clone()).ok().unwrap();
    let address = env.new_address("prima");
    arrives(&env, &address, 1);
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["status"]["activated"], true, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    arrives(&env, &address, 2);
    assert_eq!(
        poll_and_subjects(&env, &id).await,
        ["Richiesta n. 2 di accesso agli atti"]
    );
}

/// A lease held longer than a registration waits (a run that died holding it): the
/// registration fails saying so, never leaving the account silently without its baseline; once
/// the lease has expired, registering again records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_fails_clearly_while_the_lease_stays_held_and_completes_when_repeated() {
    let held_for = Duration::from_secs(3);
    let held: Arc<std::sync::OnceLock<Lease>> = Arc::default();
    let env = env_with_create_hook(
        {
            let held = held.clone();
            move |store, id| {
                let held = held.clone();
                Box::pin(async move {
                    held.set(hold(&*store, &id, held_for).await).ok().unwrap();
                })
            }
        },
        Some(Duration::from_secs(1)),
    )
    .await;
    let address = env.new_address("occupata");
    arrives(&env, &address, 1);
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.error().contains("being read by another run"), "{r:?}");
    assert!(r.error().contains("register it again"), "{r:?}");
    let listed = env.admin("GET", "/accounts", None).await;
    assert_eq!(listed.body["accounts"][0]["status"]["activated"], false);

    // Until the lease has really ended: it was taken during the registration, whose own length
    // depends on the machine's load.
    let ends = held.get().expect("the hook held the lease").expires_at;
    let left = (ends - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(200)).await;
    let again = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["status"]["activated"], true, "{again:?}");
    assert_eq!(again.body["status"]["last_uid"], 1, "{again:?}");
    let id = again.body["id"].as_str().unwrap().to_owned();
    arrives(&env, &address, 2);
    assert_eq!(
        poll_and_subjects(&env, &id).await,
        ["Richiesta n. 2 di accesso agli atti"]
    );
}
