//! Ticket fields of the simulated account (OAS `TicketFieldObject`): the system fields every
//! account has, and custom fields created through the API.
//!
//! Choices where the contract is silent (unverified against Zendesk): a custom field without a
//! title is `422 RecordInvalid` with `details.title`; an unknown `type` is `422` with
//! `details.type`; a ticket's `custom_fields` entry naming no active custom field is ignored,
//! not stored (so a test that reads the ticket sees only values Zendesk would show).

use std::collections::HashMap;

use serde_json::{Value, json};

use super::rules::{cursor_page, object_under};
use super::{ApiError, State, timestamp};

/// The custom field types of Create Ticket Field (OAS).
const CUSTOM_TYPES: &[&str] = &[
    "text",
    "textarea",
    "checkbox",
    "date",
    "integer",
    "decimal",
    "regexp",
    "partialcreditcard",
    "multiselect",
    "tagger",
    "lookup",
];

/// The system fields every Zendesk account lists first.
pub(super) const SYSTEM_FIELDS: &[(&str, &str)] = &[
    ("subject", "Subject"),
    ("description", "Description"),
    ("status", "Status"),
    ("tickettype", "Type"),
    ("priority", "Priority"),
    ("group", "Group"),
    ("assignee", "Assignee"),
];

/// A ticket field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketField {
    pub id: u64,
    /// `type`: a system type (`subject`, `status`, …) or a custom one (`text`, …).
    pub kind: String,
    pub title: String,
    pub active: bool,
    pub agent_description: Option<String>,
    pub visible_in_portal: bool,
    pub editable_in_portal: bool,
    pub system: bool,
    pub created_at: String,
    pub updated_at: String,
}

fn field_json(f: &TicketField) -> Value {
    json!({
        "id": f.id,
        "url": format!("/api/v2/ticket_fields/{}.json", f.id),
        "type": f.kind,
        "title": f.title,
        "raw_title": f.title,
        "active": f.active,
        "agent_description": f.agent_description,
        "visible_in_portal": f.visible_in_portal,
        "editable_in_portal": f.editable_in_portal,
        "removable": !f.system,
        "required": false,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
    })
}

impl State {
    /// Adds the system fields (once, at start), with ids of their own (1, 2, …) so the ids of
    /// everything else are unchanged.
    pub(super) fn add_system_fields(&mut self) {
        for (id, (kind, title)) in (1u64..).zip(SYSTEM_FIELDS) {
            let now = timestamp();
            self.ticket_fields.insert(
                id,
                TicketField {
                    id,
                    kind: (*kind).to_string(),
                    title: (*title).to_string(),
                    active: true,
                    agent_description: None,
                    visible_in_portal: true,
                    editable_in_portal: false,
                    system: true,
                    created_at: now.clone(),
                    updated_at: now,
                },
            );
        }
    }

    /// `POST /api/v2/ticket_fields` → `201 {"ticket_field": …}`.
    pub fn create_ticket_field(&mut self, request: &Value) -> Result<Value, ApiError> {
        let input = object_under(request, "ticket_field")?;
        let kind = match input.get("type") {
            None | Some(Value::Null) => "text".to_string(),
            Some(Value::String(t)) if CUSTOM_TYPES.contains(&t.as_str()) => t.clone(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "type",
                    "InvalidValue",
                    "Type: is not a valid custom field type",
                ));
            }
        };
        let title = match input.get("title").and_then(Value::as_str) {
            Some(t) if !t.trim().is_empty() => t.to_string(),
            _ => {
                return Err(ApiError::invalid(
                    "title",
                    "BlankValue",
                    "Title: cannot be blank",
                ));
            }
        };
        let flag =
            |key: &str, default: bool| input.get(key).and_then(Value::as_bool).unwrap_or(default);
        let id = self.next_id();
        let now = timestamp();
        let field = TicketField {
            id,
            kind,
            title,
            active: flag("active", true),
            agent_description: input
                .get("agent_description")
                .and_then(Value::as_str)
                .map(str::to_string),
            visible_in_portal: flag("visible_in_portal", false),
            editable_in_portal: flag("editable_in_portal", false),
            system: false,
            created_at: now.clone(),
            updated_at: now,
        };
        let body = json!({ "ticket_field": field_json(&field) });
        self.ticket_fields.insert(id, field);
        Ok(body)
    }

    pub fn show_ticket_field(&self, id: u64) -> Result<Value, ApiError> {
        let field = self
            .ticket_fields
            .get(&id)
            .ok_or_else(ApiError::not_found)?;
        Ok(json!({ "ticket_field": field_json(field) }))
    }

    /// `DELETE /api/v2/ticket_fields/{id}` → `204`; system fields cannot be deleted.
    pub fn delete_ticket_field(&mut self, id: u64) -> Result<(), ApiError> {
        match self.ticket_fields.get(&id) {
            None => Err(ApiError::not_found()),
            Some(f) if f.system => Err(ApiError::invalid(
                "base",
                "InvalidValue",
                "System fields cannot be deleted",
            )),
            Some(_) => {
                self.ticket_fields.remove(&id);
                Ok(())
            }
        }
    }

    /// `GET /api/v2/ticket_fields`: in id order; cursor pages when `page[size]` is given, else
    /// every field (as Zendesk does without pagination parameters).
    pub fn list_ticket_fields(&self, query: &HashMap<String, String>) -> Result<Value, ApiError> {
        let items: Vec<(String, Value)> = self
            .ticket_fields
            .values()
            .map(|f| (f.id.to_string(), field_json(f)))
            .collect();
        if !query.keys().any(|k| k.starts_with("page[")) {
            let all: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
            return Ok(
                json!({ "ticket_fields": all, "next_page": null, "previous_page": null, "count": self.ticket_fields.len() }),
            );
        }
        let path = format!("{}/api/v2/ticket_fields", self.base_url);
        cursor_page("ticket_fields", &path, items, query, &[])
    }

    /// Whether `id` is an active custom field a ticket can carry a value for.
    pub(super) fn is_custom_field(&self, id: u64) -> bool {
        self.ticket_fields
            .get(&id)
            .is_some_and(|f| !f.system && f.active)
    }
}
