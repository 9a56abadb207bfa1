//! One deployment serving several Zendesk instances: an integrator registers a client's Zendesk
//! once (checked against it), then that client's PEC accounts name it. Everything of such an
//! account — provisioning, imported tickets, the webhook and its secrets, the notes — lives in
//! its own Zendesk, and removing its last account removes that Zendesk's webhook only.

use std::sync::Arc;

use e2e::admin_env::AdminEnv;
use e2e::inbound_env::mail;
use e2e::outbound_env::{call, sign};
use sandbox::ZendeskSimulator;
use serde_json::{Value, json};

fn instance_body(sim: &ZendeskSimulator, id: &str) -> Value {
    json!({
        "id": id,
        "url": sim.base_url(),
        "email": sim.credentials().agent_email,
        "api_token": sim.credentials().api_token,
    })
}

/// A webhook call signed with `sim`'s webhook secrets, to `path`.
async fn signed_call(
    env: &AdminEnv,
    sim: &ZendeskSimulator,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let webhook = sim.webhooks().remove(0);
    let signing = sim.webhook_signing_secret(&webhook.id).unwrap();
    let bearer = webhook.authentication.as_ref().unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = body.to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let headers = vec![
        ("Authorization".to_owned(), format!("Bearer {bearer}")),
        (
            "X-Zendesk-Webhook-Signature".to_owned(),
            sign(&signing, &ts, body.as_bytes()),
        ),
        ("X-Zendesk-Webhook-Signature-Timestamp".to_owned(), ts),
    ];
    let a = call(&env.router, "POST", path, headers, body.into_bytes()).await;
    (a.status, a.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_zendesk_gets_its_own_accounts_objects_tickets_and_webhook() {
    let env = AdminEnv::new().await;
    let other = Arc::new(ZendeskSimulator::start().await.unwrap());

    // Registration is checked against that Zendesk.
    let mut wrong = instance_body(&other, "cliente-b");
    wrong["api_token"] = json!("not-the-token");
    let a = env.admin("POST", "/zendesk-instances", Some(&wrong)).await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("api_token")),
        "{a:?}"
    );
    other.set_agent_role("end-user");
    let a = env
        .admin(
            "POST",
            "/zendesk-instances",
            Some(&instance_body(&other, "cliente-b")),
        )
        .await;
    assert_eq!(a.status, 422, "{a:?}");
    assert!(a.error().contains("agent"), "{a:?}");
    other.set_agent_role("agent");
    assert!(
        env.env.raw.secrets().await.is_empty(),
        "nothing kept from refused registrations"
    );
    let a = env
        .admin(
            "POST",
            "/zendesk-instances",
            Some(&instance_body(&other, "cliente-b")),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["webhook_path"], "/webhooks/zendesk/cliente-b");
    assert!(!a.body.to_string().contains(&other.credentials().api_token));
    let again = env
        .admin(
            "POST",
            "/zendesk-instances",
            Some(&instance_body(&other, "cliente-b")),
        )
        .await;
    assert_eq!(again.status, 200, "the same id again replaces it");
    let listed = env.admin("GET", "/zendesk-instances", None).await;
    assert_eq!(
        listed.body["zendesk_instances"].as_array().unwrap().len(),
        1
    );

    // An account naming an unknown instance is refused; one naming cliente-b goes there.
    let address = env.new_address("istanza");
    let mut reg = env.registration(&address);
    reg["zendesk_instance"] = json!("nessuna");
    let a = env.admin("POST", "/accounts", Some(&reg)).await;
    assert_eq!(
        (a.status, a.body["field"].as_str()),
        (422, Some("zendesk_instance")),
        "{a:?}"
    );
    reg["zendesk_instance"] = json!("cliente-b");
    let r = env.admin("POST", "/accounts", Some(&reg)).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["zendesk_instance"], "cliente-b");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        env.sim.webhooks().len() + env.sim.triggers().len(),
        0,
        "nothing in the default Zendesk"
    );
    let webhooks = other.webhooks();
    assert_eq!(webhooks.len(), 1);
    assert_eq!(
        webhooks[0].endpoint,
        "https://pec.example.test/webhooks/zendesk/cliente-b"
    );
    assert_eq!(other.triggers().len(), 2);
    // A default-instance account alongside.
    let default_address = env.new_address("predefinita");
    let d = env
        .admin(
            "POST",
            "/accounts",
            Some(&env.registration(&default_address)),
        )
        .await;
    assert_eq!(d.status, 201, "{d:?}");
    assert_eq!((env.sim.webhooks().len(), env.sim.triggers().len()), (1, 2));
    assert_eq!(other.triggers().len(), 2, "the other Zendesk is untouched");

    // A PEC to the account becomes a ticket in its Zendesk.
    let original = mail::citizen(7, &address).build();
    env.dovecot.append_blocking(
        &address,
        &[mail::envelope(&original, "opec-istanza-7@pec.sandbox.test")],
    );
    let polled = env
        .admin("POST", &format!("/accounts/{id}/poll"), None)
        .await;
    assert_eq!(polled.body["tickets_created"], 1, "{polled:?}");
    let tickets = other.tickets();
    assert_eq!(tickets.len(), 1);
    assert!(env.sim.tickets().is_empty(), "not in the default Zendesk");
    let ticket = tickets[0].id;

    // Its webhook is verified with its own secrets and sends the reply.
    let body = json!({"account": id, "ticket_id": ticket.to_string(), "requester": mail::CITIZEN,
                      "subject": "Risposta", "message": "Testo"});
    let (status, wrong_keys) =
        signed_call(&env, &env.sim, "/webhooks/zendesk/cliente-b", &body).await;
    assert_eq!(
        status, 401,
        "signed with the other Zendesk's secrets: {wrong_keys}"
    );
    let (status, on_default) = signed_call(&env, &env.sim, "/webhooks/zendesk", &body).await;
    assert_eq!(
        status, 404,
        "the default Zendesk cannot send for it: {on_default}"
    );
    let (status, sent) = signed_call(&env, &other, "/webhooks/zendesk/cliente-b", &body).await;
    assert_eq!((status, &sent["status"]), (200, &json!("sent")), "{sent}");
    let notes: Vec<String> = other
        .comments(ticket)
        .into_iter()
        .filter(|c| !c.public)
        .map(|c| c.html_body)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("PEC inviata a")),
        "{notes:#?}"
    );

    // The instance cannot go while it serves an account; its last account takes its webhook.
    let a = env
        .admin("DELETE", "/zendesk-instances/cliente-b", None)
        .await;
    assert_eq!(a.status, 409, "{a:?}");
    assert_eq!(
        env.admin("DELETE", &format!("/accounts/{id}"), None)
            .await
            .status,
        204
    );
    assert_eq!((other.webhooks().len(), other.triggers().len()), (0, 0));
    assert_eq!(
        (env.sim.webhooks().len(), env.sim.triggers().len()),
        (1, 2),
        "default untouched"
    );
    assert_eq!(
        env.admin("DELETE", "/zendesk-instances/cliente-b", None)
            .await
            .status,
        204
    );
    let secrets = env.env.raw.secrets().await;
    assert!(
        secrets.iter().all(|s| !s.contains("zendesk/cliente-b/")),
        "the instance's secrets are gone: {secrets:?}"
    );
    assert_eq!(
        env.admin("DELETE", "/zendesk-instances/cliente-b", None)
            .await
            .status,
        404
    );
}

/// Deleting the last account of a second Zendesk takes that Zendesk's webhook secrets only: the
/// default Zendesk's webhook keeps working. And no deletion leaves a webhook Zendesk still calls
/// without its secrets: while a trigger an admin made calls it, the webhook and its secrets stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_instances_last_account_never_breaks_another_webhook() {
    use connector::domain::SecretName;
    let env = AdminEnv::new().await;
    let other = Arc::new(ZendeskSimulator::start().await.unwrap());
    let a = env
        .admin(
            "POST",
            "/zendesk-instances",
            Some(&instance_body(&other, "cliente-c")),
        )
        .await;
    assert_eq!(a.status, 201, "{a:?}");
    let default_address = env.new_address("resta");
    let d = env
        .admin(
            "POST",
            "/accounts",
            Some(&env.registration(&default_address)),
        )
        .await;
    assert_eq!(d.status, 201, "{d:?}");
    let default_id = d.body["id"].as_str().unwrap().to_owned();
    let address = env.new_address("va-via");
    let mut reg = env.registration(&address);
    reg["zendesk_instance"] = json!("cliente-c");
    let r = env.admin("POST", "/accounts", Some(&reg)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();

    let gone = env.admin("DELETE", &format!("/accounts/{id}"), None).await;
    assert_eq!(gone.status, 204, "{gone:?}");
    for name in [
        SecretName::WebhookBearerToken,
        SecretName::WebhookSigningSecret,
    ] {
        assert!(
            env.env.secrets.get(&name).await.is_ok(),
            "the default Zendesk's {name:?} is kept"
        );
    }
    // The default Zendesk's webhook still answers (a template send for a ticket of its account).
    let original = mail::citizen(1, &default_address).build();
    env.dovecot.append_blocking(
        &default_address,
        &[mail::envelope(&original, "opec-resta-1@pec.sandbox.test")],
    );
    let polled = env
        .admin("POST", &format!("/accounts/{default_id}/poll"), None)
        .await;
    assert_eq!(polled.body["tickets_created"], 1, "{polled:?}");
    let ticket = env.sim.tickets()[0].id;
    let body = json!({"account": default_id, "ticket_id": ticket.to_string(),
                      "requester": mail::CITIZEN, "subject": "Risposta", "message": "Testo"});
    let (status, answer) = signed_call(&env, &env.sim, "/webhooks/zendesk", &body).await;
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("sent")),
        "{answer}"
    );

    // An admin's own trigger calls the connector's webhook: deleting the last account leaves the
    // webhook and its secrets in place, and says why.
    let webhook = env.sim.webhooks()[0].id.clone();
    let client = reqwest::Client::new();
    let creds = env.sim.credentials();
    let made = client
        .post(format!("{}/api/v2/triggers", env.sim.base_url()))
        .basic_auth(format!("{}/token", creds.agent_email), Some(&creds.api_token))
        .json(&json!({"trigger": {
            "title": "Trigger dell'amministratore",
            "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": "urgente"}], "any": []},
            "actions": [{"field": "notification_webhook", "value": [webhook, "{\"x\":1}"]}]
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let refused = env
        .admin("DELETE", &format!("/accounts/{default_id}"), None)
        .await;
    assert!(refused.status >= 400, "{refused:?}");
    assert_eq!(
        env.sim.webhooks().len(),
        1,
        "the webhook Zendesk calls stays"
    );
    for name in [
        SecretName::WebhookBearerToken,
        SecretName::WebhookSigningSecret,
    ] {
        assert!(
            env.env.secrets.get(&name).await.is_ok(),
            "{name:?} stays while the webhook is called"
        );
    }
}

/// An instance URL is parsed: plain http only to this machine, the host exactly, nothing but the
/// origin; it is refused naming the field before any request leaves, and kept as its origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_urls_are_parsed_and_refused_before_anything_is_sent() {
    let env = AdminEnv::new().await;
    let other = ZendeskSimulator::start().await.unwrap();
    let port = other.base_url().rsplit(':').next().unwrap().to_owned();
    for (url, reason) in [
        ("http://127.0.0.1.evil.example".to_owned(), "https://"),
        ("http://localhost.evil.example".to_owned(), "https://"),
        (format!("http://127.0.0.1:{port}.evil.example"), "not a URL"),
        ("https://x@evil.example".to_owned(), "user name"),
        (format!("http://x@127.0.0.1:{port}"), "user name"),
        ("https://acme.zendesk.com/api".to_owned(), "path"),
        (format!("http://127.0.0.1:{port}/api"), "path"),
        (format!("http://localhost:{port}/?x=1"), "query"),
        ("ftp://acme.zendesk.com".to_owned(), "https://"),
    ] {
        let mut body = instance_body(&other, "cliente-u");
        body["url"] = json!(url);
        let a = env.admin("POST", "/zendesk-instances", Some(&body)).await;
        assert_eq!(
            (a.status, a.body["field"].as_str()),
            (422, Some("url")),
            "{url}: {a:?}"
        );
        assert!(a.error().contains(reason), "{url}: {a:?}");
        assert!(
            !a.error().contains("cannot reach"),
            "{url}: nothing is sent: {a:?}"
        );
    }
    assert!(env.env.raw.secrets().await.is_empty(), "nothing kept");

    // The scheme and host in any case, a trailing `/`: kept as the origin.
    let mut body = instance_body(&other, "cliente-u");
    body["url"] = json!(format!("HTTP://127.0.0.1:{port}/"));
    let a = env.admin("POST", "/zendesk-instances", Some(&body)).await;
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.body["url"], other.base_url());
}

/// Registering an instance again with a new token: this process's client uses it at once, and
/// another process's (the poller's) once its kept client is older than the TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_registered_again_is_called_with_its_new_token() {
    use connector::domain::{InstanceId, SecretName, ZendeskAuthKind, ZendeskInstance};
    use connector::zendesks::ZendeskDirectory;
    use sandbox::zendesk::Credentials;
    use secrecy::SecretString;
    use std::time::{Duration, Instant};

    let env = AdminEnv::new().await;
    // Zendesk now takes only the new token; the connector keeps the one it was registered with.
    let other = ZendeskSimulator::start_with(Credentials {
        api_token: "token-nuovo".into(),
        ..Credentials::default()
    })
    .await
    .unwrap();
    let id = InstanceId::parse("cliente-t").unwrap();
    env.env
        .store
        .put_instance(&ZendeskInstance {
            id: id.clone(),
            url: other.base_url().to_owned(),
            auth: ZendeskAuthKind::ApiToken {
                email: other.credentials().agent_email.clone(),
            },
            created_at: chrono::Utc::now(),
        })
        .await
        .unwrap();
    env.env
        .secrets
        .put(
            &SecretName::ZendeskToken(id.clone()),
            &SecretString::from("token-vecchio"),
        )
        .await
        .unwrap();
    let soon = || Instant::now() + Duration::from_secs(5);
    // The api's clients (this process) and the poller's (another warm process).
    let api = env.inbound.instances.clone().expect("instances");
    let mut poller = ZendeskDirectory::new(env.env.store.clone(), env.env.secrets.clone());
    poller.ttl = Duration::from_millis(500);
    for directory in [&*api, &poller] {
        let client = directory.client(&id).await.unwrap();
        assert!(client.current_user(soon()).await.is_err(), "the old token");
    }

    let a = env
        .admin(
            "POST",
            "/zendesk-instances",
            Some(&instance_body(&other, "cliente-t")),
        )
        .await;
    assert_eq!(a.status, 200, "{a:?}");
    let client = api.client(&id).await.unwrap();
    client
        .current_user(soon())
        .await
        .expect("the registering process uses the new token at once");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let client = poller.client(&id).await.unwrap();
    client
        .current_user(soon())
        .await
        .expect("another process uses it after its TTL");
}
