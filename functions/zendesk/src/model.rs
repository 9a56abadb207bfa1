//! What we send to and read from the Tickets, Comments and Uploads APIs (OAS `TicketObject`,
//! `TicketCommentObject`, `AttachmentObject`), the Webhooks API (reference §4) and the Triggers
//! and Trigger Categories APIs (OAS `TriggerObject`, `TriggerCategory`). Responses are read
//! leniently: unknown fields are ignored and missing ones take defaults.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A Zendesk ticket id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub u64);

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A token from the Uploads API; one token can carry several files (reference §3). Valid for
/// 60 minutes and consumed by the comment that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UploadToken(pub String);

impl UploadToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The end user a ticket is for, found or created by e-mail (reference §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requester {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A comment to write: public reply or internal note (`public: false`), always explicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comment {
    /// HTML; escape PEC-originated text with [`crate::text_to_html`] /
    /// [`crate::escape_placeholders`] when the author is an agent.
    pub html_body: String,
    pub public: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uploads: Vec<UploadToken>,
    /// Author other than the default (the requester on create, the API user on update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_id: Option<u64>,
}

impl Comment {
    /// An internal note written by the API user.
    pub fn internal_note(html_body: impl Into<String>) -> Self {
        Comment {
            html_body: html_body.into(),
            public: false,
            uploads: Vec::new(),
            author_id: None,
        }
    }
}

/// A custom ticket field value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomField {
    pub id: u64,
    #[serde(default)]
    pub value: Value,
}

/// A ticket to create (`POST /api/v2/tickets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewTicket {
    pub subject: String,
    pub requester: Requester,
    pub comment: Comment,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub custom_fields: Vec<CustomField>,
}

/// Changes to an existing ticket (`PUT /api/v2/tickets/{id}`). Batch what belongs together: the
/// Update Ticket limit is 30 updates per 10 minutes per ticket (reference §2.5).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TicketUpdate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<Comment>,
    /// Added to the existing tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_tags: Vec<String>,
    /// Removed from the existing tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_tags: Vec<String>,
    /// A new status (`open`, `pending`, `solved`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A ticket as Zendesk returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub requester_id: Option<u64>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub custom_fields: Vec<CustomField>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// A comment as Zendesk returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TicketComment {
    pub id: u64,
    #[serde(default)]
    pub author_id: Option<u64>,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub html_body: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    #[serde(default)]
    pub created_at: Option<String>,
}

/// An attachment. `content_url` may point outside `{subdomain}.zendesk.com`: never send Zendesk
/// credentials there (reference §3).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Attachment {
    pub id: u64,
    #[serde(default)]
    pub file_name: String,
    #[serde(default)]
    pub content_url: String,
    #[serde(default)]
    pub content_type: String,
    #[serde(default)]
    pub size: u64,
}

/// A user as Zendesk returns it (`GET /api/v2/users/{id}`, OAS `UserObject`): the API agent,
/// another agent or an end user (`role`: `end-user`, `agent` or `admin`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: u64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

// ----- webhooks (reference §4) ----------------------------------------------------------------

/// The subscription that connects a webhook to triggers and automations (reference §4.1).
pub const CONDITIONAL_TICKET_EVENTS: &str = "conditional_ticket_events";

/// Bearer-token authentication Zendesk adds to every request of a webhook. Serialized as
/// `{"type": "bearer_token", "data": {"token": …}, "add_position": "header"}`; the token never
/// shows in `Debug` output and is never read back from Zendesk.
#[derive(Clone)]
pub struct WebhookAuth {
    pub token: SecretString,
}

impl WebhookAuth {
    pub fn bearer(token: SecretString) -> Self {
        WebhookAuth { token }
    }
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("type", &"bearer_token")
            .field("token", &"[REDACTED]")
            .finish()
    }
}

impl Serialize for WebhookAuth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Data<'a> {
            token: &'a str,
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            data: Data<'a>,
            add_position: &'static str,
        }
        Wire {
            kind: "bearer_token",
            data: Data {
                token: self.token.expose_secret(),
            },
            add_position: "header",
        }
        .serialize(serializer)
    }
}

/// A webhook to create or replace (`POST /api/v2/webhooks`, `PUT /api/v2/webhooks/{id}`).
#[derive(Debug, Clone, Serialize)]
pub struct WebhookSpec {
    pub name: String,
    pub endpoint: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub http_method: String,
    /// `json`, `xml` or `form_encoded`.
    pub request_format: String,
    /// `active` or `inactive`.
    pub status: String,
    pub subscriptions: Vec<String>,
    /// Omitted: a webhook without authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication: Option<WebhookAuth>,
}

impl WebhookSpec {
    /// An active JSON `POST` webhook for triggers (`conditional_ticket_events`), with a bearer
    /// token when one is given.
    pub fn for_triggers(
        name: impl Into<String>,
        endpoint: impl Into<String>,
        bearer_token: Option<SecretString>,
    ) -> Self {
        WebhookSpec {
            name: name.into(),
            endpoint: endpoint.into(),
            http_method: "POST".to_string(),
            request_format: "json".to_string(),
            status: "active".to_string(),
            subscriptions: vec![CONDITIONAL_TICKET_EVENTS.to_string()],
            authentication: bearer_token.map(WebhookAuth::bearer),
        }
    }
}

/// A webhook as Zendesk returns it. Its credentials are never read back.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Webhook {
    /// A ULID string such as `01F1KRFQ6BG29CNWFR60NK5FNY`.
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub http_method: String,
    #[serde(default)]
    pub request_format: String,
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subscriptions: Vec<String>,
    #[serde(default)]
    pub authentication: Option<WebhookAuthInfo>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// The kind of authentication a webhook uses, without its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebhookAuthInfo {
    /// `bearer_token`, `basic_auth` or `api_key`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub add_position: Option<String>,
}

// ----- ticket fields (OAS `TicketFieldObject`) ------------------------------------------------

/// A ticket field (OAS `TicketFieldObject`): the connector provisions text fields for the PEC
/// facts and reads them back by id or title.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TicketField {
    pub id: u64,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub title: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A custom ticket field to create (`POST /api/v2/ticket_fields`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketFieldSpec {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    /// Shown to agents only (OAS `agent_description`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_description: Option<String>,
    pub visible_in_portal: bool,
    pub editable_in_portal: bool,
    pub active: bool,
}

// ----- triggers and trigger categories (reference §5) -----------------------------------------

/// A trigger category (OAS `TriggerCategory`; its id is a string).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TriggerCategory {
    #[serde(deserialize_with = "string_or_number")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub position: Option<i64>,
}

/// One trigger condition (OAS `TriggerConditionObject`); `value` is a string, a number or an
/// array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub field: String,
    pub operator: String,
    #[serde(default)]
    pub value: Value,
}

impl Condition {
    pub fn new(
        field: impl Into<String>,
        operator: impl Into<String>,
        value: impl Into<Value>,
    ) -> Self {
        Condition {
            field: field.into(),
            operator: operator.into(),
            value: value.into(),
        }
    }
}

/// A trigger's conditions: every one of `all` and at least one of `any` (when not empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Conditions {
    #[serde(default, deserialize_with = "null_as_default")]
    pub all: Vec<Condition>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub any: Vec<Condition>,
}

/// One trigger action (OAS `TriggerActionObject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerAction {
    pub field: String,
    #[serde(default)]
    pub value: Value,
}

impl TriggerAction {
    pub fn new(field: impl Into<String>, value: impl Into<Value>) -> Self {
        TriggerAction {
            field: field.into(),
            value: value.into(),
        }
    }

    /// Calls webhook `webhook_id` with `body` (a JSON template with placeholders): the value is
    /// a real two-string array, not a string that looks like one (reference §5.2).
    pub fn notification_webhook(webhook_id: &str, body: &str) -> Self {
        TriggerAction::new(
            "notification_webhook",
            Value::Array(vec![webhook_id.into(), body.into()]),
        )
    }
}

/// The writable part of a trigger (`POST /api/v2/triggers`, `PUT /api/v2/triggers/{id}`). An
/// update replaces `conditions` and `actions` wholesale (reference §5.2): to change a trigger,
/// read it, edit [`Trigger::spec`] and write all of it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerSpec {
    pub title: String,
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<String>,
    pub conditions: Conditions,
    pub actions: Vec<TriggerAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A trigger as Zendesk returns it (OAS `TriggerObject`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub id: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default = "default_true")]
    pub active: bool,
    #[serde(default, deserialize_with = "optional_string_or_number")]
    pub category_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Conditions,
    #[serde(default, deserialize_with = "null_as_default")]
    pub actions: Vec<TriggerAction>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub position: Option<u64>,
}

impl Trigger {
    /// Everything writable, as read: edit it and pass it to `update_trigger` to keep what an
    /// admin added by hand.
    pub fn spec(&self) -> TriggerSpec {
        TriggerSpec {
            title: self.title.clone(),
            active: self.active,
            category_id: self.category_id.clone(),
            conditions: self.conditions.clone(),
            actions: self.actions.clone(),
            description: self.description.clone(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// `null` reads as the type's default (Zendesk sends `"any": null`, `"conditions": {}`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Ids documented as strings, read leniently when they come as numbers.
fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number id, got {other}"
        ))),
    }
}

fn optional_string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or number id, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhook_auth_serializes_the_token_but_never_debugs_it() {
        let spec = WebhookSpec::for_triggers(
            "PEC Connector",
            "https://pec.example.it/zendesk/webhook",
            Some("tok-s3cr3t".to_string().into()),
        );
        let wire = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            wire["authentication"],
            json!({"type": "bearer_token", "data": {"token": "tok-s3cr3t"}, "add_position": "header"})
        );
        assert_eq!(wire["subscriptions"], json!(["conditional_ticket_events"]));
        let debug = format!("{spec:?}");
        assert!(!debug.contains("tok-s3cr3t"), "{debug}");
        let without = WebhookSpec::for_triggers("n", "https://e", None);
        assert!(
            serde_json::to_value(&without)
                .unwrap()
                .get("authentication")
                .is_none()
        );
    }

    #[test]
    fn triggers_read_leniently_and_write_back_what_they_read() {
        let trigger: Trigger = serde_json::from_value(json!({
            "id": 25, "title": "T", "category_id": 10026, "conditions": {"all": null},
            "actions": [{"field": "status", "value": "solved"}], "url": "x", "raw_title": "T"
        }))
        .unwrap();
        assert_eq!(trigger.category_id.as_deref(), Some("10026"));
        assert!(trigger.active);
        assert!(trigger.conditions.all.is_empty() && trigger.conditions.any.is_empty());
        let spec = serde_json::to_value(trigger.spec()).unwrap();
        assert_eq!(
            spec,
            json!({"title": "T", "active": true, "category_id": "10026",
                   "conditions": {"all": [], "any": []},
                   "actions": [{"field": "status", "value": "solved"}]})
        );
        let empty: Trigger = serde_json::from_value(json!({"id": 1, "conditions": {}})).unwrap();
        assert_eq!(empty.conditions, Conditions::default());
    }
}
