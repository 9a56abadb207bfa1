//! The simulator's trigger engine: triggers and webhooks made through its API call a real HTTP
//! receiver on loopback, as Zendesk calls the connector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Client, RequestBuilder, StatusCode};
use sandbox::ZendeskSimulator;
use sandbox::zendesk::CallOutcome;
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(5);
const BEARER: &str = "receiver-bearer-token-0123456789abcdef";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP server on `127.0.0.1:0` that answers `200` and keeps every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = got.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(Received {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        headers: headers
                            .iter()
                            .map(|(n, v)| {
                                (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                            })
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    "ok"
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let url = format!("http://{}/zendesk/webhook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

struct Api {
    sim: ZendeskSimulator,
    http: Client,
}

impl Api {
    async fn start() -> Api {
        Api {
            sim: ZendeskSimulator::start().await.expect("simulator starts"),
            http: Client::new(),
        }
    }

    fn auth(&self, request: RequestBuilder) -> RequestBuilder {
        let c = self.sim.credentials();
        request.basic_auth(format!("{}/token", c.agent_email), Some(&c.api_token))
    }

    async fn send(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.sim.base_url());
        let response = self
            .auth(self.http.request(method, url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A trigger-connected webhook to `endpoint` with bearer authentication: (id, signing secret).
    async fn webhook(&self, endpoint: &str) -> (String, String) {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v2/webhooks",
                &json!({"webhook": {
                    "name": "PEC Connector",
                    "endpoint": endpoint,
                    "http_method": "POST",
                    "request_format": "json",
                    "status": "active",
                    "subscriptions": ["conditional_ticket_events"],
                    "authentication": {
                        "type": "bearer_token",
                        "add_position": "header",
                        "data": {"token": BEARER}
                    }
                }}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["webhook"]["id"].as_str().unwrap().to_string();
        let url = format!(
            "{}/api/v2/webhooks/{id}/signing_secret",
            self.sim.base_url()
        );
        let secret: Value = self
            .auth(self.http.get(url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let secret = secret["signing_secret"]["secret"].as_str().unwrap();
        (id, secret.to_string())
    }

    async fn trigger(&self, trigger: Value) -> u64 {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v2/triggers",
                &json!({ "trigger": trigger }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["trigger"]["id"].as_u64().unwrap()
    }

    async fn ticket(&self, tags: &[&str]) -> u64 {
        let (status, body) = self
            .send(
                Method::POST,
                "/api/v2/tickets",
                &json!({"ticket": {
                    "subject": "Invio File 7339338",
                    "requester": {"email": "sdi03@pec.fatturapa.it", "name": "SdI"},
                    "comment": {"body": "Testo della PEC", "public": true},
                    "tags": tags,
                }}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["ticket"]["id"].as_u64().unwrap()
    }

    async fn api_comment(&self, ticket: u64, text: &str) {
        let (status, body) = self
            .send(
                Method::PUT,
                &format!("/api/v2/tickets/{ticket}"),
                &json!({"ticket": {"comment": {"body": text, "public": true}}}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// The reference §5.3 public-reply trigger with tag `pec` and a body of ids and the requester.
fn public_reply_trigger(webhook: &str) -> Value {
    json!({
        "title": "PEC: send public agent reply",
        "conditions": {"all": [
            {"field": "update_type", "operator": "is", "value": "Change"},
            {"field": "comment_is_public", "operator": "is", "value": "true"},
            {"field": "current_tags", "operator": "includes", "value": "pec"},
        ], "any": []},
        "actions": [{"field": "notification_webhook", "value": [
            webhook,
            "{\"ticket_id\":\"{{ticket.id}}\",\"requester\":\"{{ticket.requester.email}}\",\"by\":\"{{current_user.email}}\",\"text\":\"{{ticket.latest_public_comment}}\",\"x\":\"{{no.such.thing}}\"}"
        ]}]
    })
}

fn signature_of(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_public_agent_reply_calls_the_webhook_once_signed_with_the_bearer() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = api.webhook(&receiver.url).await;
    let trigger = api.trigger(public_reply_trigger(&webhook)).await;
    let ticket = api.ticket(&["pec"]).await;

    let comment = api.sim.agent_reply(ticket, "Gentile utente", true).unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);

    let got = receiver.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let call = &got[0];
    assert_eq!(
        (call.method.as_str(), call.path.as_str()),
        ("POST", "/zendesk/webhook")
    );
    assert_eq!(
        call.body,
        format!(
            "{{\"ticket_id\":\"{ticket}\",\"requester\":\"sdi03@pec.fatturapa.it\",\"by\":\"api@pec-connector.test\",\"text\":\"Gentile utente\",\"x\":\"\"}}"
        )
    );
    let body: Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body["ticket_id"], ticket.to_string());
    assert_eq!(call.header("content-type"), Some("application/json"));
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {BEARER}").as_str())
    );
    assert_eq!(call.header("x-zendesk-webhook-id"), Some(webhook.as_str()));
    let timestamp = call
        .header("x-zendesk-webhook-signature-timestamp")
        .unwrap();
    chrono::DateTime::parse_from_rfc3339(timestamp).expect("an RFC 3339 timestamp");
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    assert_eq!(
        call.header("x-zendesk-webhook-signature"),
        Some(signature_of(&secret, timestamp, &call.body).as_str())
    );
    let invocation = call.header("x-zendesk-webhook-invocation-id").unwrap();
    assert!(!invocation.is_empty());

    let firings = api.sim.trigger_firings();
    assert_eq!(firings.len(), 1);
    assert_eq!(
        (firings[0].trigger_id, firings[0].ticket_id),
        (trigger, ticket)
    );
    assert_eq!(firings[0].calls[0].outcome, CallOutcome::Status(200));
    assert_eq!(firings[0].calls[0].body, call.body);
    assert_eq!(firings[0].calls[0].invocation_id, invocation);

    // The reply is a web comment in the comments API; API comments stay `api`.
    let comments = api.sim.comments(ticket);
    assert_eq!(
        comments.last().map(|c| (c.id, c.via_id)),
        Some((comment, 0))
    );
    let url = format!("{}/api/v2/tickets/{ticket}/comments", api.sim.base_url());
    let listed: Value = api
        .auth(api.http.get(url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["comments"][0]["via"]["channel"], "api");
    assert_eq!(listed["comments"][1]["via"]["channel"], "web");
    assert_eq!(listed["comments"][1]["author_id"], api.sim.agent_id());
}

#[tokio::test]
async fn a_private_note_and_an_untagged_ticket_call_nothing() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = api.webhook(&receiver.url).await;
    api.trigger(public_reply_trigger(&webhook)).await;
    let tagged = api.ticket(&["pec"]).await;
    let untagged = api.ticket(&["other"]).await;

    assert!(api.sim.agent_reply(tagged, "nota interna", false).is_some());
    assert!(api.sim.agent_reply(untagged, "risposta", true).is_some());
    assert_eq!(api.sim.agent_reply(999_999, "x", true), None);
    api.sim.set_status(tagged, "closed");
    assert_eq!(api.sim.agent_reply(tagged, "x", true), None);

    assert!(api.sim.trigger_firings().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn the_via_condition_keeps_api_comments_out_and_lets_agent_replies_in() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = api.webhook(&receiver.url).await;
    api.trigger(json!({
        "title": "Not from the API",
        "conditions": {"all": [
            {"field": "current_via_id", "operator": "is_not", "value": "5"},
            {"field": "comment_is_public", "operator": "is", "value": "true"},
        ]},
        "actions": [{"field": "notification_webhook", "value": [webhook, "{\"id\":\"{{ticket.id}}\"}"]}]
    }))
    .await;
    let ticket = api.ticket(&["pec"]).await;

    // Off by default for API updates; on, the via condition stops them.
    api.api_comment(ticket, "follow-up").await;
    api.sim.set_fire_triggers(true);
    api.api_comment(ticket, "another follow-up").await;
    assert!(api.sim.trigger_firings().is_empty());

    api.sim.agent_reply(ticket, "risposta", true).unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn api_updates_fire_when_turned_on_and_see_create_and_change() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = api.webhook(&receiver.url).await;
    api.trigger(json!({
        "title": "New outbound PEC",
        "conditions": {"all": [
            {"field": "update_type", "operator": "is", "value": "Create"},
            {"field": "current_tags", "operator": "includes", "value": "pec_send other"},
            {"field": "role", "operator": "is", "value": "agent"},
        ]},
        "actions": [
            {"field": "notification_webhook", "value": [webhook, "{\"id\":\"{{ticket.id}}\",\"status\":\"{{ticket.status}}\"}"]},
            {"field": "remove_tags", "value": "pec_send"},
            {"field": "current_tags", "value": "pec pec_out_pending"},
            {"field": "status", "value": "pending"},
        ]
    }))
    .await;
    api.sim.set_fire_triggers(true);
    let (status, created) = api
        .send(
            Method::POST,
            "/api/v2/tickets",
            &json!({"ticket": {
                "subject": "Nuova PEC",
                "requester": {"email": "ufficio@pec.example.it"},
                "comment": {"body": "Testo"},
                "tags": ["pec_send"],
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The response shows the ticket after the triggers, as Zendesk's does.
    assert_eq!(created["ticket"]["tags"], json!(["pec", "pec_out_pending"]));
    assert_eq!(created["ticket"]["status"], "pending");
    let id = created["ticket"]["id"].as_u64().unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].body,
        format!("{{\"id\":\"{id}\",\"status\":\"pending\"}}")
    );

    // A change is not a create.
    api.api_comment(id, "altro").await;
    assert_eq!(api.sim.trigger_firings().len(), 1);
}

#[tokio::test]
async fn a_trigger_that_removes_its_tag_fires_once() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = api.webhook(&receiver.url).await;
    api.trigger(json!({
        "title": "Reply by PEC Connector",
        "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": "reply_x"}]},
        "actions": [
            {"field": "notification_webhook", "value": [webhook, "{\"id\":\"{{ticket.id}}\"}"]},
            {"field": "remove_tags", "value": "reply_x"},
        ]
    }))
    .await;
    // Runs after the first: sees the tag already removed.
    api.trigger(json!({
        "title": "Sees the tag",
        "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": "reply_x"}]},
        "actions": [{"field": "notification_webhook", "value": [webhook, "late"]}]
    }))
    .await;
    let ticket = api.ticket(&["pec", "reply_x"]).await;

    api.sim.agent_reply(ticket, "prima", true).unwrap();
    api.sim.agent_reply(ticket, "seconda", true).unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);
    assert_eq!(api.sim.trigger_firings().len(), 1);
    assert_eq!(api.sim.ticket(ticket).unwrap().tags, ["pec"]);
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn an_inactive_trigger_never_fires() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, _) = api.webhook(&receiver.url).await;
    let mut trigger = public_reply_trigger(&webhook);
    trigger["active"] = json!(false);
    api.trigger(trigger).await;
    api.sim.set_fire_triggers(true);
    let ticket = api.ticket(&["pec"]).await;
    api.api_comment(ticket, "x").await;
    api.sim.agent_reply(ticket, "risposta", true).unwrap();
    assert!(api.sim.trigger_firings().is_empty());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn an_unreachable_webhook_is_logged_as_an_error() {
    let api = Api::start().await;
    // A port that was free a moment ago: connection refused.
    let closed = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let (webhook, _) = api.webhook(&url).await;
    api.trigger(public_reply_trigger(&webhook)).await;
    let ticket = api.ticket(&["pec"]).await;

    api.sim.agent_reply(ticket, "risposta", true).unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);
    let firings = api.sim.trigger_firings();
    let call = &firings[0].calls[0];
    assert_eq!(call.url, url);
    assert!(
        matches!(&call.outcome, CallOutcome::Failed(e) if !e.is_empty()),
        "{call:?}"
    );
    // The simulator keeps serving.
    api.sim.agent_reply(ticket, "ancora", true).unwrap();
    assert_eq!(api.sim.wait_for_firings(2, WAIT).await, 2);
}

/// The two triggers `connector::admin::provision` creates per account (`reply_parts`,
/// `public_reply_parts`, `public_reply_body`), replicated as JSON.
#[tokio::test]
async fn the_connectors_provisioned_triggers_behave_as_in_zendesk() {
    let api = Api::start().await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = api.webhook(&receiver.url).await;
    let (status, category) = api
        .send(
            Method::POST,
            "/api/v2/trigger_categories",
            &json!({"trigger_category": {"name": "PEC Connector"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let category = category["trigger_category"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let account_tag = "pec_connector_ufficipec.comune.it";
    let reply_tag = "pec_connector_reply_ufficipec.comune.it";
    let reply_body = json!({
        "account": "acc-1",
        "ticket_id": "{{ticket.id}}",
        "requester": "{{ticket.requester.email}}",
        "subject": "Re: {{ticket.title}}",
        "message": "{{ticket.latest_public_comment}}",
    })
    .to_string();
    let public_body = json!({
        "event": "public_reply",
        "account": "acc-1",
        "ticket_id": "{{ticket.id}}",
        "updated_at": "{{ticket.updated_at_with_timestamp}}",
    })
    .to_string();
    let reply = api
        .trigger(json!({
            "title": "Reply by PEC Connector [uffici@pec.comune.it]",
            "category_id": category,
            "conditions": {"all": [{"field": "current_tags", "operator": "includes", "value": reply_tag}], "any": []},
            "actions": [
                {"field": "notification_webhook", "value": [webhook, reply_body]},
                {"field": "remove_tags", "value": reply_tag},
            ]
        }))
        .await;
    let public = api
        .trigger(json!({
            "title": "Public reply by PEC Connector [uffici@pec.comune.it]",
            "category_id": category,
            "conditions": {"all": [
                {"field": "update_type", "operator": "is", "value": "Change"},
                {"field": "comment_is_public", "operator": "is", "value": "true"},
                {"field": "current_tags", "operator": "includes", "value": account_tag},
                {"field": "role", "operator": "is_not", "value": "end_user"},
                {"field": "current_via_id", "operator": "is_not", "value": "5"},
            ], "any": []},
            "actions": [{"field": "notification_webhook", "value": [webhook, public_body]}]
        }))
        .await;
    api.sim.set_fire_triggers(true);
    let ticket = api.ticket(&["pec_connector", account_tag]).await;

    // The connector's own follow-up through the API: nothing fires.
    api.api_comment(ticket, "seguito dalla PEC").await;
    assert!(api.sim.trigger_firings().is_empty());

    // An agent's public reply: the public-reply trigger only.
    api.sim
        .agent_reply(ticket, "Risposta dell'ufficio", true)
        .unwrap();
    assert_eq!(api.sim.wait_for_firings(1, WAIT).await, 1);
    let updated_at = api.sim.ticket(ticket).unwrap().updated_at;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(
        body,
        json!({"event": "public_reply", "account": "acc-1", "ticket_id": ticket.to_string(), "updated_at": updated_at})
    );
    assert!(
        updated_at.ends_with('Z') && updated_at.len() == 20,
        "{updated_at}"
    );
    let timestamp = got[0]
        .header("x-zendesk-webhook-signature-timestamp")
        .unwrap();
    assert_eq!(
        got[0].header("x-zendesk-webhook-signature"),
        Some(signature_of(&secret, timestamp, &got[0].body).as_str())
    );

    // An agent adds the reply tag (a macro through the API here): the reply trigger fires once
    // and removes its tag.
    let (status, _) = api
        .send(
            Method::PUT,
            &format!("/api/v2/tickets/{ticket}"),
            &json!({"ticket": {"additional_tags": [reply_tag]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.sim.wait_for_firings(2, WAIT).await, 2);
    let firings = api.sim.trigger_firings();
    assert_eq!(
        firings.iter().map(|f| f.trigger_id).collect::<Vec<_>>(),
        [public, reply]
    );
    let got = receiver.received();
    let body: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(body["requester"], "sdi03@pec.fatturapa.it");
    assert_eq!(body["subject"], "Re: Invio File 7339338");
    assert_eq!(body["message"], "Risposta dell'ufficio");
    assert!(
        !api.sim
            .ticket(ticket)
            .unwrap()
            .tags
            .iter()
            .any(|t| t == reply_tag)
    );
    api.api_comment(ticket, "altro seguito").await;
    assert_eq!(api.sim.trigger_firings().len(), 2);
}
