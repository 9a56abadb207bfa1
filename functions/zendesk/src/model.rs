//! What we send to and read from the Tickets, Comments and Uploads APIs (OAS `TicketObject`,
//! `TicketCommentObject`, `AttachmentObject`). Responses are read leniently: unknown fields are
//! ignored and missing ones take defaults.

use serde::{Deserialize, Serialize};
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
