//! Zendesk does what agents expect (issue #13): the whole loop driven as Zendesk drives it —
//! the simulator's triggers, provisioned by the admin API, call the api router's webhook over
//! HTTP; polls go through the poller handler; Dovecot is the mailbox and the SMTP test server
//! takes what leaves. One test (or a few) per item of the issue.

use std::time::Duration;

use connector::domain::{DeliveryState, SecretName, SendStatus};
use e2e::channel_env::ChannelEnv;
use e2e::env::unique_name;
use e2e::inbound_env::mail::{self, CITIZEN, Facts};
use e2e::outbound_env::{Answer, call, sign};
use pec::ReceiptKind;
use sandbox::AgentUpdate;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// The reply tag of `env`'s account.
fn reply_tag(env: &ChannelEnv) -> String {
    format!("pec_connector_reply_{}", env.address.replace('@', ""))
}

/// The account's own tag.
fn account_tag(env: &ChannelEnv) -> String {
    format!("pec_connector_{}", env.address.replace('@', ""))
}

/// The value of header `name` in a raw message (one line, as the connector writes it).
fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

fn text_of(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// The agent adds the reply tag (and maybe a public comment) in one update in the agent UI.
fn tag_update(env: &ChannelEnv, ticket: u64, comment: Option<&str>) {
    env.sim
        .agent_update(
            ticket,
            AgentUpdate {
                comment: comment.map(|c| (c.to_owned(), true)),
                add_tags: vec![reply_tag(env)],
                ..AgentUpdate::default()
            },
        )
        .expect("the ticket takes updates");
}

/// Calls the webhook as Zendesk would (signed with the stored secrets), with `body`.
async fn webhook(env: &ChannelEnv, body: &str) -> Answer {
    let signing = env
        .env
        .secrets
        .get(&SecretName::WebhookSigningSecret)
        .await
        .expect("signing secret");
    let bearer = env
        .env
        .secrets
        .get(&SecretName::WebhookBearerToken)
        .await
        .expect("bearer token");
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let headers = vec![
        (
            "Authorization".to_owned(),
            format!("Bearer {}", bearer.expose_secret()),
        ),
        (
            "X-Zendesk-Webhook-Signature".to_owned(),
            sign(signing.expose_secret(), &ts, body.as_bytes()),
        ),
        ("X-Zendesk-Webhook-Signature-Timestamp".to_owned(), ts),
        ("X-Zendesk-Webhook-Invocation-Id".to_owned(), unique_name()),
        ("Content-Type".to_owned(), "application/json".to_owned()),
    ];
    call(
        &env.router,
        "POST",
        api::WEBHOOK_PATH,
        headers,
        body.as_bytes().to_vec(),
    )
    .await
}

// ----- 1. A citizen's reply is the citizen's comment --------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_citizens_reply_is_the_citizens_comment_and_reopens_a_solved_ticket() {
    let env = ChannelEnv::new("autore").await;
    let ticket = env.citizen_ticket(1).await;
    env.sim
        .agent_reply(ticket, "Gentile signor Rossi, ecco la risposta.", true)
        .expect("agent reply");
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "the agent's reply left as a PEC");
    let ours = header(&sent[0].raw, "Message-ID").expect("our Message-ID");
    env.sim.set_status(ticket, "solved");

    env.deliver(vec![mail::reply(
        2,
        &env.address,
        &ours,
        &format!("opec.reply.{}@pec.sandbox.test", unique_name()),
    )])
    .await;
    env.poll().await;

    let t = env.sim.ticket(ticket).unwrap();
    let requester = env.user_id(CITIZEN).expect("the citizen is a Zendesk user");
    assert_eq!(t.requester_id, requester);
    let reply = t.comments.last().unwrap();
    assert!(reply.public, "{reply:?}");
    assert!(reply.body.contains("richiesta 2"), "{}", reply.body);
    assert_eq!(
        reply.author_id,
        requester,
        "the citizen's reply is authored by the citizen, not by the API agent ({})",
        env.sim.agent_id()
    );
    assert_eq!(t.status, "open", "a reply reopens a solved ticket");
    assert_eq!(
        env.sent().len(),
        1,
        "the citizen's comment is never sent back as PEC"
    );

    // A closed ticket keeps today's behaviour: the reply opens a follow-up ticket.
    env.sim.set_status(ticket, "closed");
    env.deliver(vec![mail::reply(
        3,
        &env.address,
        &ours,
        &format!("opec.reply3.{}@pec.sandbox.test", unique_name()),
    )])
    .await;
    env.poll().await;
    let follow_up: Vec<_> = env
        .sim
        .tickets()
        .into_iter()
        .filter(|t| t.id != ticket)
        .collect();
    assert_eq!(follow_up.len(), 1);
    assert_eq!(follow_up[0].comments[0].author_id, requester);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_simulator_refuses_an_author_that_is_no_user() {
    let env = ChannelEnv::new("autore-ignoto").await;
    let ticket = env.citizen_ticket(1).await;
    let client = reqwest::Client::new();
    let creds = env.sim.credentials();
    let answer = client
        .put(format!("{}/api/v2/tickets/{ticket}", env.sim.base_url()))
        .basic_auth(
            format!("{}/token", creds.agent_email),
            Some(&creds.api_token),
        )
        .json(&json!({"ticket": {"comment": {"body": "x", "public": true, "author_id": 999_999_999u64}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert!(body["details"]["author_id"].is_array(), "{body}");
}

// ----- 2. One PEC per agent action ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replies_before_the_first_webhook_both_leave_in_order_each_once() {
    let env = ChannelEnv::new("due-risposte").await;
    let ticket = env.citizen_ticket(1).await;
    env.sim.hold_webhooks();
    env.sim.agent_reply(ticket, "Prima risposta", true).unwrap();
    env.sim
        .agent_reply(ticket, "Seconda risposta", true)
        .unwrap();
    env.sim.release_webhooks();
    env.settle().await;
    // Deliveries of the same calls again change nothing.
    env.poll().await;

    let sent = env.sent();
    assert_eq!(sent.len(), 2, "one PEC per reply");
    assert!(text_of(&sent[0].raw).contains("Prima risposta"));
    assert!(text_of(&sent[1].raw).contains("Seconda risposta"));
    let notes = env.notes(ticket);
    assert_eq!(
        notes.iter().filter(|n| n.contains("PEC inviata")).count(),
        2,
        "{notes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reply_tag_and_a_public_comment_in_one_update_send_one_pec() {
    let env = ChannelEnv::new("tag-e-commento").await;
    let ticket = env.citizen_ticket(1).await;
    tag_update(&env, ticket, Some("Risposta con il modello"));
    env.settle().await;
    let firings = env.sim.trigger_firings();
    assert_eq!(
        firings.iter().filter(|f| f.ticket_id == ticket).count(),
        2,
        "both triggers fire on the update, as in Zendesk: {firings:#?}"
    );
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "one PEC for one agent action");
    assert!(text_of(&sent[0].raw).contains("Risposta con il modello"));
    // A later reply still leaves, once.
    env.sim
        .agent_reply(ticket, "Risposta successiva", true)
        .unwrap();
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 2);
    assert!(text_of(&sent[1].raw).contains("Risposta successiva"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_template_send_takes_files_only_from_the_comment_of_its_update() {
    let env = ChannelEnv::new("allegati-vecchi").await;
    let ticket = env.citizen_ticket(1).await;
    // An earlier agent comment with a file, added through the API (no trigger for it).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let zendesk = zendesk::ZendeskClient::new(zendesk::ZendeskConfig {
        base_url: env.sim.base_url().to_owned(),
        auth: zendesk::Auth::Basic {
            email: env.sim.credentials().agent_email.clone(),
            api_token: secrecy::SecretString::from(env.sim.credentials().api_token.clone()),
        },
        timeout: Duration::from_secs(10),
        retry: zendesk::RetryPolicy::default(),
    })
    .unwrap();
    let token = zendesk
        .upload(
            "vecchio.pdf",
            "application/pdf",
            b"%PDF-1.4 vecchio".to_vec(),
            None,
            deadline,
        )
        .await
        .unwrap();
    zendesk
        .add_comment(
            zendesk::TicketId(ticket),
            &zendesk::Comment {
                html_body: "<p>Documento di ieri</p>".into(),
                public: true,
                uploads: vec![token],
                author_id: None,
            },
            deadline,
        )
        .await
        .unwrap();
    env.settle().await;
    assert!(env.sent().is_empty(), "API comments fire no PEC");
    // The agent adds the tag later: Zendesk's times have whole seconds, and the comment of an
    // update is recognised by its time.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    tag_update(&env, ticket, None);
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "the template left");
    assert!(
        !text_of(&sent[0].raw).contains("vecchio.pdf"),
        "no file of an older comment goes with the template"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_end_users_comment_never_leaves_as_pec() {
    let env = ChannelEnv::new("cc").await;
    let ticket = env.citizen_ticket(1).await;
    env.sim.hold_webhooks();
    env.sim
        .agent_reply(ticket, "Risposta dell'agente", true)
        .unwrap();
    env.sim
        .end_user_reply(
            ticket,
            "collega.in.copia@pec.test",
            "Commento del collega in copia",
        )
        .unwrap();
    env.sim.release_webhooks();
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 1, "only the agent's reply");
    let text = text_of(&sent[0].raw);
    assert!(text.contains("Risposta dell'agente"));
    assert!(!text.contains("collega in copia"));
}

// ----- 3. The webhook body cannot redirect mail -----------------------------------------------------

const INJECTED: &str = r#"Richiesta","to":"terzo@pec.example.org","message":"<p>testo falso</p>"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_injected_subject_never_chooses_the_recipient_or_the_text() {
    let env = ChannelEnv::new("iniezione").await;
    let original = mail::citizen(1, &env.address).subject(INJECTED).build();
    env.deliver(vec![mail::envelope(
        &original,
        &format!("opec.inj.{}@pec.sandbox.test", unique_name()),
    )])
    .await;
    env.poll().await;
    let ticket = env.sim.tickets()[0].id;
    assert_eq!(env.sim.ticket(ticket).unwrap().subject, INJECTED);

    // Zendesk inserting the subject verbatim: the body breaks, nothing leaves, the agents know.
    tag_update(&env, ticket, None);
    env.settle().await;
    assert!(
        env.sent().is_empty(),
        "nothing sent: {:?}",
        env.sent().iter().map(|d| &d.rcpt_tos).collect::<Vec<_>>()
    );
    let notes = env.notes(ticket);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("PEC non inviata") && n.contains("segnaposto")),
        "{notes:#?}"
    );

    // Zendesk escaping it: one harmless subject; the PEC goes to the requester only, with the
    // account's text.
    env.sim.set_json_escape_placeholders(true);
    tag_update(&env, ticket, None);
    env.settle().await;
    let sent = env.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rcpt_tos, [CITIZEN]);
    let text = text_of(&sent[0].raw);
    assert!(!text.contains("terzo@pec.example.org") || !text.contains("testo falso"));
    assert!(!text.contains("<p>testo falso</p>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_key_the_trigger_lacks_is_refused_and_one_an_admin_added_is_taken() {
    let env = ChannelEnv::new("chiavi").await;
    let ticket = env.citizen_ticket(1).await;
    let account = env
        .admin("GET", &format!("/accounts/{}", env.account.as_str()), None)
        .await;
    let body = |extra: &str| {
        format!(
            r#"{{"account":"{}","ticket_id":"{ticket}","requester":"x@pec.it","subject":"Oggetto","message":"<p>Testo</p>"{extra}}}"#,
            env.account.as_str()
        )
    };
    let refused = webhook(&env, &body(r#","to":"terzo@pec.example.org""#)).await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert!(env.sent().is_empty());
    assert!(env.notes(ticket).iter().any(|n| n.contains("to")));

    // An admin adds "to" to the trigger in Zendesk: then it is the trigger's own key.
    let trigger = account.body["zendesk"]["reply_trigger_id"]
        .as_u64()
        .or_else(|| {
            env.sim
                .triggers()
                .into_iter()
                .find(|t| t.title.starts_with("Reply by PEC Connector"))
                .map(|t| t.id)
        })
        .expect("reply trigger");
    assert!(env.sim.edit_trigger(trigger, |t| {
        for a in &mut t.actions {
            if a["field"] == "notification_webhook" {
                let mut body: serde_json::Map<String, Value> =
                    serde_json::from_str(a["value"][1].as_str().unwrap()).unwrap();
                body.insert("to".into(), json!("{{ticket.ticket_field_1}}"));
                a["value"][1] = json!(Value::Object(body).to_string());
            }
        }
    }));
    let taken = webhook(&env, &body(r#","to":"ufficio@pec.example.org""#)).await;
    assert_eq!(taken.status, 200, "{:?}", taken.body);
    assert_eq!(env.sent()[0].rcpt_tos, ["ufficio@pec.example.org"]);
}

// ----- 4. Every refusal is visible on the ticket ------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_account_sends_nothing_and_says_so() {
    let env = ChannelEnv::new("disattivata").await;
    let ticket = env.citizen_ticket(1).await;
    let patched = env
        .admin(
            "PATCH",
            &format!("/accounts/{}", env.account.as_str()),
            Some(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    env.sim.agent_reply(ticket, "Risposta", true).unwrap();
    env.settle().await;
    assert!(env.sent().is_empty(), "a disabled account sends nothing");
    let notes = env.notes(ticket);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("PEC non inviata") && n.contains("disattivata")),
        "{notes:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_after_authentication_are_noted_in_italian() {
    let env = ChannelEnv::new("rifiuti").await;
    let ticket = env.citizen_ticket(1).await;

    // An account the connector does not know.
    let unknown = webhook(
        &env,
        &format!(
            r#"{{"account":"sconosciuta","ticket_id":"{ticket}","requester":"a@pec.it","subject":"S","message":"M"}}"#
        ),
    )
    .await;
    assert_eq!(unknown.status, 404);
    // A body that is not JSON any more.
    let broken = webhook(
        &env,
        &format!(
            r#"{{"account":"{}","ticket_id":"{ticket}","subject":"a"b"}}"#,
            env.account.as_str()
        ),
    )
    .await;
    assert_eq!(broken.status, 400);
    // Nothing to send: the newest public comment is the citizen's.
    let nothing = webhook(
        &env,
        &format!(
            r#"{{"event":"public_reply","account":"{}","ticket_id":"{ticket}"}}"#,
            env.account.as_str()
        ),
    )
    .await;
    assert_eq!(nothing.status, 200, "{:?}", nothing.body);
    assert_eq!(nothing.body["status"], "ignored");

    assert!(env.sent().is_empty());
    let notes = env.notes(ticket);
    assert!(
        notes.iter().any(|n| n.contains("sconosciuta")),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("non si può leggere")),
        "{notes:#?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("non è di un agente")),
        "{notes:#?}"
    );
    // Every note says nothing was sent (the PEC facts are in the ticket's fields, no note).
    assert_eq!(notes.len(), 3, "{notes:#?}");
    assert!(
        notes.iter().all(|n| n.contains("PEC non inviata")),
        "{notes:#?}"
    );
}

// ----- 5. Seed fidelity -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn templates_edited_in_zendesk_survive_changes_and_registration() {
    let env = ChannelEnv::new("modelli").await;
    let trigger = env
        .sim
        .triggers()
        .into_iter()
        .find(|t| t.title.starts_with("Reply by PEC Connector"))
        .expect("reply trigger");
    let body_of = |env: &ChannelEnv| -> serde_json::Map<String, Value> {
        let t = env.sim.trigger(trigger.id).unwrap();
        let action = t
            .actions
            .iter()
            .find(|a| a["field"] == "notification_webhook")
            .unwrap()
            .clone();
        serde_json::from_str(action["value"][1].as_str().unwrap()).unwrap()
    };
    // An admin edits subject and message in Zendesk, the seed's documented way.
    assert!(env.sim.edit_trigger(trigger.id, |t| {
        for a in &mut t.actions {
            if a["field"] == "notification_webhook" {
                let mut body: serde_json::Map<String, Value> =
                    serde_json::from_str(a["value"][1].as_str().unwrap()).unwrap();
                body.insert("subject".into(), json!("Comune di Prova: {{ticket.title}}"));
                body.insert("message".into(), json!("<p>Testo scritto in Zendesk</p>"));
                a["value"][1] = json!(Value::Object(body).to_string());
            }
        }
    }));
    let path = format!("/accounts/{}", env.account.as_str());
    let patched = env
        .admin("PATCH", &path, Some(&json!({"poll_interval_minutes": 5})))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(
        body_of(&env)["subject"],
        "Comune di Prova: {{ticket.title}}"
    );
    assert_eq!(body_of(&env)["message"], "<p>Testo scritto in Zendesk</p>");
    assert_eq!(
        patched.body["message_template"],
        "<p>Testo scritto in Zendesk</p>"
    );

    // Registering the same address again keeps them too.
    let (smtp_host, smtp_port) = e2e::inbound_env::smtp_server();
    let again = env
        .admin(
            "POST",
            "/accounts",
            Some(&json!({
                "address": env.address, "password": e2e::inbound_env::PASSWORD,
                "imap_host": env.dovecot.host, "imap_port": env.dovecot.port,
                "smtp_host": smtp_host, "smtp_port": smtp_port,
            })),
        )
        .await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(body_of(&env)["message"], "<p>Testo scritto in Zendesk</p>");

    // Set through the API, they change.
    let set = env
        .admin(
            "PATCH",
            &path,
            Some(&json!({"message_template": "<p>Nuovo</p>"})),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(body_of(&env)["message"], "<p>Nuovo</p>");
    assert_eq!(
        body_of(&env)["subject"],
        "Comune di Prova: {{ticket.title}}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_guard_covers_tickets_that_carry_a_reply_tag() {
    // Zendesk's standard notification exists before the connector.
    let env = ChannelEnv::new("guardia").await;
    let client = reqwest::Client::new();
    let creds = env.sim.credentials();
    let created: Value = client
        .post(format!("{}/api/v2/triggers", env.sim.base_url()))
        .basic_auth(format!("{}/token", creds.agent_email), Some(&creds.api_token))
        .json(&json!({"trigger": {
            "title": "Notify requester and CCs of comment update",
            "conditions": {"all": [
                {"field": "update_type", "operator": "is", "value": "Change"},
                {"field": "comment_is_public", "operator": "is", "value": "true"}
            ], "any": []},
            "actions": [{"field": "notification_user", "value": ["requester_and_ccs", "[{{ticket.account}}] Re: {{ticket.title}}", "{{ticket.comments_formatted}}"]}],
            "position": 0
        }}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let notify = created["trigger"]["id"].as_u64().expect("trigger id");
    let path = format!("/accounts/{}", env.account.as_str());
    let guarded = env
        .admin("PATCH", &path, Some(&json!({"guard_notifications": true})))
        .await;
    assert_eq!(guarded.status, 200, "{:?}", guarded.body);
    let guard = env.sim.trigger(notify).unwrap();
    let value = guard
        .all
        .iter()
        .find(|c| c["operator"] == "not_includes")
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .expect("guard condition");
    assert!(value.split(' ').any(|t| t == "pec_connector"), "{value}");
    assert!(value.split(' ').any(|t| t == reply_tag(&env)), "{value}");

    // An agent writes to a citizen from a ticket of their own, with the reply tag: Zendesk's
    // e-mail notification stays silent, the PEC leaves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let zendesk = zendesk::ZendeskClient::new(zendesk::ZendeskConfig {
        base_url: env.sim.base_url().to_owned(),
        auth: zendesk::Auth::Basic {
            email: creds.agent_email.clone(),
            api_token: secrecy::SecretString::from(creds.api_token.clone()),
        },
        timeout: Duration::from_secs(10),
        retry: zendesk::RetryPolicy::default(),
    })
    .unwrap();
    env.sim.set_fire_triggers(false);
    let own = zendesk
        .create_ticket(
            &zendesk::NewTicket {
                subject: "Comunicazione".into(),
                requester: zendesk::Requester {
                    email: "cittadina@pec.cittadino.test".into(),
                    name: None,
                },
                comment: zendesk::Comment::internal_note("<p>Apertura</p>"),
                external_id: None,
                tags: Vec::new(),
                custom_fields: Vec::new(),
            },
            &unique_name(),
            deadline,
        )
        .await
        .unwrap()
        .id
        .0;
    env.sim.set_fire_triggers(true);
    tag_update(&env, own, Some("Le scriviamo per comunicarle..."));
    env.settle().await;
    let fired: Vec<String> = env
        .sim
        .trigger_firings()
        .into_iter()
        .filter(|f| f.ticket_id == own)
        .map(|f| f.trigger_title)
        .collect();
    assert!(
        !fired.iter().any(|t| t.starts_with("Notify requester")),
        "the standard notification stayed silent: {fired:?}"
    );
    assert_eq!(env.sent().len(), 1);
    assert!(
        env.sim
            .ticket(own)
            .unwrap()
            .tags
            .contains(&"pec_connector".to_owned())
    );

    // Undone with the switch.
    let off = env
        .admin("PATCH", &path, Some(&json!({"guard_notifications": false})))
        .await;
    assert_eq!(off.status, 200);
    assert!(
        !env.sim
            .trigger(notify)
            .unwrap()
            .all
            .iter()
            .any(|c| c["operator"] == "not_includes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alert_receipt_and_unreadable_tickets_never_send_a_pec() {
    let env = ChannelEnv::new("senza-tag").await;
    env.deliver(vec![mail::unreadable(1)]).await;
    let unmatched = mail::receipt(
        ReceiptKind::Accettazione,
        &mail::sent(&env.address, "<mai-inviato@pec.test>", &[CITIZEN]),
        Facts::id(&format!("opec.acc.{}@pec.sandbox.test", unique_name())),
    );
    env.deliver(vec![unmatched]).await;
    env.poll().await;
    let tickets = env.sim.tickets();
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    for t in &tickets {
        assert!(
            !t.tags.contains(&account_tag(&env)),
            "ticket {} carries the account's tag: {:?}",
            t.id,
            t.tags
        );
        assert!(t.tags.contains(&"pec_connector".to_owned()));
        env.sim.agent_reply(t.id, "Risposta", true).unwrap();
    }
    env.settle().await;
    assert!(
        env.sent().is_empty(),
        "no PEC to the office's own box or a robot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_receipts_as_tickets_the_sent_note_promises_nothing_else() {
    let env = ChannelEnv::with("ricevute-ticket", json!({"receipt_mode": "ticket"})).await;
    let ticket = env.citizen_ticket(1).await;
    env.sim.agent_reply(ticket, "Risposta", true).unwrap();
    env.settle().await;
    let notes = env.notes(ticket);
    let sent = notes
        .iter()
        .find(|n| n.contains("PEC inviata"))
        .expect("sent note");
    assert!(!sent.contains("saranno aggiunte a questo ticket"), "{sent}");
    assert!(sent.contains("ticket separati"), "{sent}");
}

// ----- 9. Every receipt kind reaches its ticket --------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_receipt_kind_lands_on_the_ticket_with_its_text_tag_and_state() {
    let env = ChannelEnv::new("ricevute").await;
    // (kind, daticert errore and errore-esteso, note title, tag, delivery state)
    type Case<'a> = (
        ReceiptKind,
        Option<(&'a str, &'a str)>,
        &'a str,
        &'a str,
        Option<DeliveryState>,
    );
    let cases: [Case; 9] = [
        (
            ReceiptKind::Accettazione,
            None,
            "Ricevuta di accettazione",
            "pec_accettata",
            Some(DeliveryState::Accepted),
        ),
        (
            ReceiptKind::PresaInCarico,
            None,
            "Ricevuta di presa in carico",
            "pec_presa_in_carico",
            Some(DeliveryState::Accepted),
        ),
        (
            ReceiptKind::PreavvisoErroreConsegna,
            Some(("no-dest", "5.4.1 - nessuna conferma")),
            "Preavviso di mancata consegna",
            "pec_preavviso_mancata_consegna",
            Some(DeliveryState::Delayed),
        ),
        (
            ReceiptKind::AvvenutaConsegna,
            None,
            "Ricevuta di avvenuta consegna",
            "pec_consegnata",
            Some(DeliveryState::Delivered),
        ),
        (
            ReceiptKind::ErroreConsegna,
            Some(("no-dest", "5.1.1 - Utente non esistente")),
            "Avviso di mancata consegna",
            "pec_mancata_consegna",
            Some(DeliveryState::NotDelivered),
        ),
        (
            ReceiptKind::ErroreConsegna,
            Some(("virus", "Rilevato virus")),
            "Avviso di mancata consegna",
            "pec_mancata_consegna",
            Some(DeliveryState::NotDelivered),
        ),
        (
            ReceiptKind::RilevazioneVirus,
            Some(("virus", "Rilevato virus")),
            "Avviso di rilevazione virus",
            "pec_virus",
            Some(DeliveryState::NotDelivered),
        ),
        (
            ReceiptKind::NonAccettazione,
            Some(("altro", "Destinatario non valido")),
            "Avviso di non accettazione",
            "pec_non_accettata",
            Some(DeliveryState::NotAccepted),
        ),
        (
            ReceiptKind::NonAccettazione,
            Some(("virus", "Rilevato virus")),
            "Avviso di non accettazione",
            "pec_non_accettata",
            Some(DeliveryState::NotAccepted),
        ),
    ];
    for (n, (kind, error, title, tag, state)) in cases.into_iter().enumerate() {
        let ticket = env.citizen_ticket(n as u32 + 1).await;
        env.sim
            .agent_reply(ticket, &format!("Risposta {n}"), true)
            .unwrap();
        env.settle().await;
        let sent = env.sent();
        let raw = &sent.last().expect("the reply left").raw;
        let mid = header(raw, "Message-ID").unwrap();
        let bare = mid.trim_matches(['<', '>']).to_owned();
        // The receipts before this one in the PEC's life, then this one.
        let mut receipts = Vec::new();
        if kind != ReceiptKind::Accettazione && kind != ReceiptKind::NonAccettazione {
            receipts.push(mail::receipt(
                ReceiptKind::Accettazione,
                raw,
                Facts::id(&format!("opec.{n}.{}@pec.sandbox.test", unique_name())),
            ));
        }
        let mut facts = Facts::id(&format!("opec.{n}.k.{}@pec.sandbox.test", unique_name()));
        if matches!(
            kind,
            ReceiptKind::AvvenutaConsegna
                | ReceiptKind::ErroreConsegna
                | ReceiptKind::PreavvisoErroreConsegna
                | ReceiptKind::RilevazioneVirus
        ) {
            facts = facts.to(CITIZEN);
        }
        if let Some((errore, esteso)) = error {
            facts = facts.error(errore, esteso);
        }
        receipts.push(mail::receipt(kind, raw, facts));
        env.deliver(receipts).await;
        env.poll().await;

        let t = env.sim.ticket(ticket).unwrap();
        let notes = env.notes(ticket);
        assert!(
            notes.iter().any(|note| note.contains(title)),
            "{kind:?}: a note titled {title:?} on ticket {ticket}: {notes:#?}"
        );
        assert!(
            t.tags.contains(&tag.to_owned()),
            "{kind:?}: tag {tag} in {:?}",
            t.tags
        );
        let record = env
            .env
            .store
            .find_outbound(
                &env.account,
                &connector::domain::MessageId::parse(&bare).unwrap(),
            )
            .await
            .unwrap()
            .expect("the outbound record");
        let citizen = connector::domain::PecAddress::parse(CITIZEN).unwrap();
        assert_eq!(
            record.delivery.get(&citizen).copied(),
            state,
            "{kind:?} {error:?}: delivery state"
        );
        if kind == ReceiptKind::NonAccettazione {
            assert_eq!(record.status, SendStatus::Failed, "not accepted = not sent");
        }
        if let Some((_, esteso)) = error {
            assert!(
                notes.iter().any(|note| note.contains(esteso)),
                "{kind:?}: the reason {esteso:?} is told: {notes:#?}"
            );
        }
    }
}
