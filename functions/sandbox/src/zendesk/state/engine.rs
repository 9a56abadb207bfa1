//! The trigger engine: after a ticket is created or updated, the active triggers are checked in
//! `position` order (then id); a trigger whose conditions hold applies its actions to the ticket
//! and the cycle starts over from the top, skipping the triggers that already fired (each fires
//! at most once per update). Its `notification_webhook` actions are rendered
//! once every trigger has run (with the ticket as saved) and become [`PendingCall`]s that
//! [`dispatch`] sends over real HTTP once the state lock is released.
//!
//! Choices where the reference is silent (unverified against Zendesk):
//! * The cycle restarts after each firing (Zendesk's "About triggers and how they work": actions
//!   of one trigger can make another fire; a trigger fires once per update). Consequence the
//!   connector must live with: a trigger that removes a tag does not stop a later-checked
//!   trigger conditioned on that tag's absence from firing in the same update.
//! * `current_tags` `includes` holds when **any** listed tag is present and `not_includes` when
//!   **none** is ("Contains at least one of / none of the following", OAS
//!   `GroupSLAPolicyFilterDefinitionResponseExample`).
//! * `comment_is_public`: `true` / `requester_can_see_comment` = the update added a public
//!   comment, `false` = a private one, `not_relevant` = a comment of either kind ("Present").
//! * `role`: the role of the user who made the update (the API user for API updates, even when
//!   the comment carries another `author_id`); `agent` also matches admins.
//! * An unknown field or operator makes the condition false; unknown actions are ignored.
//! * `{{ticket.latest_comment}}` renders the comment's plain body only (no author/date header).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{State, Ticket, merge_tags, timestamp};
use crate::zendesk::routes::Shared;

/// Zendesk's webhook request timeout (reference §4.3).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Via id of an update made in the agent UI (`web`).
pub const VIA_WEB: u64 = 0;
/// Via id of an update made through the API (`web_service`).
pub const VIA_API: u64 = 5;
/// Via id of a comment that came by e-mail (`mail`).
pub const VIA_EMAIL: u64 = 4;

/// The channel name Zendesk shows for a via id.
pub(crate) fn via_channel(via_id: u64) -> &'static str {
    match via_id {
        VIA_WEB => "web",
        VIA_API => "api",
        VIA_EMAIL => "email",
        _ => "other",
    }
}

/// One ticket create or update, as the triggers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Update {
    pub ticket_id: u64,
    pub created: bool,
    /// [`VIA_WEB`] or [`VIA_API`].
    pub via_id: u64,
    /// The user who made the update (`current_user`).
    pub user_id: u64,
    /// The comment the update added, if any.
    pub comment_id: Option<u64>,
}

/// What one trigger did to one ticket update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerFiring {
    pub trigger_id: u64,
    pub trigger_title: String,
    pub ticket_id: u64,
    /// One per `notification_webhook` action, in action order.
    pub calls: Vec<WebhookCall>,
}

impl TriggerFiring {
    /// True when every webhook call has returned (or failed).
    pub fn is_complete(&self) -> bool {
        self.calls
            .iter()
            .all(|c| !matches!(c.outcome, CallOutcome::Pending))
    }
}

/// One webhook request made by a trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCall {
    pub webhook_id: String,
    /// The endpoint called (empty when the webhook does not exist).
    pub url: String,
    /// `X-Zendesk-Webhook-Invocation-Id`.
    pub invocation_id: String,
    /// The rendered body, byte for byte as sent.
    pub body: String,
    pub outcome: CallOutcome,
}

/// How a webhook call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Not returned yet.
    Pending,
    /// The endpoint answered with this HTTP status.
    Status(u16),
    /// No answer: connection refused, timeout, inactive or unknown webhook, ….
    Failed(String),
}

/// A webhook request ready to be sent, and where its outcome goes in the firing log.
#[derive(Debug, Clone)]
pub(crate) struct PendingCall {
    firing: usize,
    call: usize,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl State {
    /// Runs the active triggers for `update` (see the module docs) and returns the webhook
    /// requests to send once the lock is released.
    pub(crate) fn run_triggers(&mut self, update: &Update) -> Vec<PendingCall> {
        let mut order: Vec<(u64, u64)> = self
            .triggers
            .values()
            .filter(|t| t.active)
            .map(|t| (t.position, t.id))
            .collect();
        order.sort_unstable();
        let mut notifications = Vec::new();
        let mut fired: Vec<u64> = Vec::new();
        // After a trigger fires the cycle starts over from the top, without the triggers that
        // already fired: a trigger that did not hold before may hold after another's actions.
        'cycle: loop {
            for (_, trigger_id) in &order {
                if fired.contains(trigger_id) {
                    continue;
                }
                let Some(trigger) = self.triggers.get(trigger_id).cloned() else {
                    continue;
                };
                let Some(ticket) = self.tickets.get(&update.ticket_id) else {
                    return Vec::new();
                };
                let holds = |c: &Value| self.condition_holds(c, ticket, update);
                let fires = trigger.all.iter().all(holds)
                    && (trigger.any.is_empty() || trigger.any.iter().any(holds));
                if !fires {
                    continue;
                }
                fired.push(trigger.id);
                let firing = self.firings.len();
                let mut calls = 0;
                for action in &trigger.actions {
                    if action["field"] == "notification_webhook" {
                        notifications.push((firing, calls, action.clone()));
                        calls += 1;
                    } else if let Some(ticket) = self.tickets.get_mut(&update.ticket_id) {
                        apply_action(ticket, action);
                    }
                }
                tracing::debug!(
                    trigger = trigger.id,
                    ticket = update.ticket_id,
                    "trigger fired"
                );
                self.firings.push(TriggerFiring {
                    trigger_id: trigger.id,
                    trigger_title: trigger.title.clone(),
                    ticket_id: update.ticket_id,
                    calls: Vec::with_capacity(calls),
                });
                continue 'cycle;
            }
            break;
        }
        // Notifications render the ticket as saved, after every trigger has run.
        let Some(ticket) = self.tickets.get(&update.ticket_id).cloned() else {
            return Vec::new();
        };
        let mut pending = Vec::new();
        for (firing, index, action) in notifications {
            let (call, request) = self.webhook_call(&action, &ticket, update, firing, index);
            self.firings[firing].calls.push(call);
            pending.extend(request);
        }
        pending
    }

    /// Records the outcome of a call sent by [`dispatch`].
    pub(crate) fn complete_call(&mut self, firing: usize, call: usize, outcome: CallOutcome) {
        if let Some(call) = self
            .firings
            .get_mut(firing)
            .and_then(|f| f.calls.get_mut(call))
        {
            call.outcome = outcome;
        }
    }

    fn condition_holds(&self, condition: &Value, ticket: &Ticket, update: &Update) -> bool {
        let field = condition["field"].as_str().unwrap_or_default();
        let operator = condition["operator"].as_str().unwrap_or_default();
        let value = text(&condition["value"]);
        let is = |actual: bool| match operator {
            "is" => Some(actual),
            "is_not" => Some(!actual),
            _ => None,
        };
        let result = match field {
            "update_type" => {
                let kind = if update.created { "Create" } else { "Change" };
                is(kind.eq_ignore_ascii_case(&value))
            }
            "comment_is_public" => {
                let public = update
                    .comment_id
                    .and_then(|id| ticket.comments.iter().find(|c| c.id == id))
                    .map(|c| c.public);
                let actual = match value.as_str() {
                    "true" | "requester_can_see_comment" => public == Some(true),
                    "false" => public == Some(false),
                    "not_relevant" => public.is_some(),
                    _ => return false,
                };
                is(actual)
            }
            "current_tags" => {
                let listed: Vec<&str> = value.split_whitespace().collect();
                let any = listed.iter().any(|t| ticket.tags.iter().any(|x| x == t));
                match operator {
                    "includes" => Some(any),
                    "not_includes" => Some(!any),
                    _ => None,
                }
            }
            "role" => {
                let role = self
                    .user(update.user_id)
                    .map(|u| u.role.replace('-', "_"))
                    .unwrap_or_default();
                let actual = match value.as_str() {
                    "agent" => role == "agent" || role == "admin",
                    other => role == other,
                };
                is(actual)
            }
            "current_via_id" => is(value.trim() == update.via_id.to_string()),
            "status" => is(ticket.status == value),
            _ => None,
        };
        result.unwrap_or(false)
    }

    /// The log entry and (if the webhook can be called) the request of one
    /// `notification_webhook` action.
    fn webhook_call(
        &mut self,
        action: &Value,
        ticket: &Ticket,
        update: &Update,
        firing: usize,
        index: usize,
    ) -> (WebhookCall, Option<PendingCall>) {
        let webhook_id = action["value"][0].as_str().unwrap_or_default().to_string();
        let template = action["value"][1].as_str().unwrap_or_default();
        let escape = self.json_escape_placeholders;
        let body = render(template, |name| {
            let value = self.placeholder(name, ticket, update);
            if escape { json_escaped(&value) } else { value }
        });
        let invocation_id = self.next_id().to_string();
        let mut call = WebhookCall {
            webhook_id: webhook_id.clone(),
            url: String::new(),
            invocation_id: invocation_id.clone(),
            body: body.clone(),
            outcome: CallOutcome::Pending,
        };
        let Some(webhook) = self.webhooks.get(&webhook_id) else {
            call.outcome = CallOutcome::Failed(format!("no webhook {webhook_id:?}"));
            return (call, None);
        };
        call.url = webhook.endpoint.clone();
        if webhook.status != "active" {
            call.outcome = CallOutcome::Failed(format!("webhook {webhook_id} is inactive"));
            return (call, None);
        }
        // Requests without a body sign the timestamp alone (reference §4.2).
        let body = (webhook.http_method != "GET").then_some(body);
        let signed_at = timestamp();
        let mut mac = match Hmac::<Sha256>::new_from_slice(webhook.signing_secret.as_bytes()) {
            Ok(mac) => mac,
            Err(e) => {
                call.outcome = CallOutcome::Failed(format!("cannot sign: {e}"));
                return (call, None);
            }
        };
        mac.update(signed_at.as_bytes());
        mac.update(body.as_deref().unwrap_or_default().as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let content_type = match webhook.request_format.as_str() {
            "xml" => "application/xml",
            "form_encoded" => "application/x-www-form-urlencoded",
            _ => "application/json",
        };
        let mut headers = vec![
            ("content-type".to_string(), content_type.to_string()),
            ("user-agent".to_string(), "Zendesk Webhook".to_string()),
            ("x-zendesk-account-id".to_string(), "10000001".to_string()),
            ("x-zendesk-webhook-id".to_string(), webhook.id.clone()),
            ("x-zendesk-webhook-invocation-id".to_string(), invocation_id),
            ("x-zendesk-webhook-signature".to_string(), signature),
            (
                "x-zendesk-webhook-signature-timestamp".to_string(),
                signed_at,
            ),
        ];
        headers.extend(authentication_header(webhook.authentication.as_ref()));
        let request = PendingCall {
            firing,
            call: index,
            method: webhook.http_method.clone(),
            url: webhook.endpoint.clone(),
            headers,
            body,
        };
        (call, Some(request))
    }

    /// The value of placeholder `name` (Liquid: unknown names render empty).
    fn placeholder(&self, name: &str, ticket: &Ticket, update: &Update) -> String {
        let requester = self.user(ticket.requester_id);
        let current = self.user(update.user_id);
        let latest = |public_only: bool| {
            ticket
                .comments
                .iter()
                .rev()
                .find(|c| c.public || !public_only)
        };
        match name {
            "ticket.url" => format!("{}/agent/tickets/{}", self.base_url, ticket.id),
            "ticket.via" => via_channel(update.via_id).to_string(),
            "ticket.created_at_with_timestamp" => ticket.created_at.clone(),
            "ticket.updated_at_with_timestamp" => ticket.updated_at.clone(),
            "ticket.requester.id" => ticket.requester_id.to_string(),
            "ticket.requester.email" => requester.map(|u| u.email.clone()).unwrap_or_default(),
            "ticket.requester.name" => requester.map(|u| u.name.clone()).unwrap_or_default(),
            "ticket.latest_comment" => latest(false).map(|c| c.body.clone()).unwrap_or_default(),
            "ticket.latest_comment_html" => latest(false)
                .map(|c| c.html_body.clone())
                .unwrap_or_default(),
            "ticket.latest_public_comment" => {
                latest(true).map(|c| c.body.clone()).unwrap_or_default()
            }
            "ticket.latest_public_comment_html" => latest(true)
                .map(|c| c.html_body.clone())
                .unwrap_or_default(),
            "current_user.id" => update.user_id.to_string(),
            "current_user.email" => current.map(|u| u.email.clone()).unwrap_or_default(),
            "current_user.name" => current.map(|u| u.name.clone()).unwrap_or_default(),
            // The ticket's own fields, as in agent comments.
            _ => super::placeholder_value(name, ticket),
        }
    }
}

/// Applies a tag or status action; other actions are ignored.
fn apply_action(ticket: &mut Ticket, action: &Value) {
    let value = text(&action["value"]);
    let tags: Vec<String> = value.split_whitespace().map(str::to_string).collect();
    match action["field"].as_str().unwrap_or_default() {
        // `current_tags` is Zendesk's "add tags" action; `add_tags` is accepted as an alias.
        "current_tags" | "add_tags" => merge_tags(&mut ticket.tags, &tags),
        "remove_tags" => ticket.tags.retain(|t| !tags.contains(t)),
        "set_tags" => {
            ticket.tags.clear();
            merge_tags(&mut ticket.tags, &tags);
        }
        "status" if !value.is_empty() => ticket.status = value,
        _ => {}
    }
}

/// A condition or action value as text: strings as they are, arrays joined with spaces.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

/// The `Authorization` (or API key) header of a webhook's `authentication`.
fn authentication_header(auth: Option<&Value>) -> Option<(String, String)> {
    let auth = auth?;
    let data = &auth["data"];
    let field = |k: &str| data[k].as_str().unwrap_or_default();
    match auth["type"].as_str()? {
        "bearer_token" => Some((
            "authorization".to_string(),
            format!("Bearer {}", field("token")),
        )),
        "basic_auth" => {
            let pair = format!("{}:{}", field("username"), field("password"));
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            Some(("authorization".to_string(), format!("Basic {encoded}")))
        }
        "api_key" => Some((field("name").to_string(), field("value").to_string())),
        _ => None,
    }
}

/// Renders `{{ name }}` placeholders with `lookup`; values are inserted verbatim (not escaped
/// for JSON), as Zendesk does (reference §6). An unclosed `{{` is left as it is.
fn render(template: &str, lookup: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        match rest[open + 2..].find("}}") {
            Some(close) => {
                out.push_str(&lookup(rest[open + 2..open + 2 + close].trim()));
                rest = &rest[open + 2 + close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// `value` as it reads inside a JSON string (quotes, backslashes and control characters
/// escaped), for the accounts where Zendesk escapes placeholder values in JSON bodies.
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_default()
        .to_string()
}

/// Sends `calls` in tasks of their own and records each outcome in the firing log; while
/// webhooks are held they wait in order instead. Must be called with the state lock released.
pub(crate) fn dispatch(shared: &Arc<Shared>, calls: Vec<PendingCall>) {
    let calls = {
        let mut state = shared.lock();
        if state.hold_webhooks {
            state.held_calls.extend(calls);
            return;
        }
        calls
    };
    for call in calls {
        let shared = shared.clone();
        let runtime = shared.runtime.clone();
        runtime.spawn(async move {
            let outcome = send(&shared.http, &call).await;
            if let CallOutcome::Failed(error) = &outcome {
                tracing::debug!(url = %call.url, %error, "webhook call failed");
            }
            shared.lock().complete_call(call.firing, call.call, outcome);
        });
    }
}

async fn send(http: &reqwest::Client, call: &PendingCall) -> CallOutcome {
    let method = match reqwest::Method::from_bytes(call.method.as_bytes()) {
        Ok(m) => m,
        Err(e) => return CallOutcome::Failed(format!("bad method {}: {e}", call.method)),
    };
    let mut request = http.request(method, &call.url).timeout(WEBHOOK_TIMEOUT);
    for (name, value) in &call.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &call.body {
        request = request.body(body.clone());
    }
    match request.send().await {
        Ok(response) => CallOutcome::Status(response.status().as_u16()),
        Err(e) => CallOutcome::Failed(error_text(&e)),
    }
}

/// The error with its sources ("error sending request: … connection refused").
fn error_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_inserts_values_verbatim_and_blanks_unknown_names() {
        let lookup = |name: &str| match name {
            "ticket.title" => "say \"hi\"".to_string(),
            _ => String::new(),
        };
        assert_eq!(
            render(
                r#"{"t":"{{ ticket.title }}","x":"{{nope}}"} {{ open"#,
                lookup
            ),
            r#"{"t":"say "hi"","x":""} {{ open"#
        );
    }

    #[test]
    fn json_escaping_keeps_a_value_inside_its_string() {
        assert_eq!(json_escaped(r#"x","to":"a@b.it"#), r#"x\",\"to\":\"a@b.it"#);
        assert_eq!(json_escaped("a\nb"), "a\\nb");
    }

    #[test]
    fn authentication_headers_follow_the_type() {
        let bearer = serde_json::json!({"type": "bearer_token", "data": {"token": "t"}});
        assert_eq!(
            authentication_header(Some(&bearer)),
            Some(("authorization".into(), "Bearer t".into()))
        );
        let basic =
            serde_json::json!({"type": "basic_auth", "data": {"username": "u", "password": "p"}});
        assert_eq!(
            authentication_header(Some(&basic)).map(|h| h.1),
            Some("Basic dTpw".into())
        );
        let key = serde_json::json!({"type": "api_key", "data": {"name": "X-Key", "value": "v"}});
        assert_eq!(
            authentication_header(Some(&key)),
            Some(("X-Key".into(), "v".into()))
        );
    }
}
