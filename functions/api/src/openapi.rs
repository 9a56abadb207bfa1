//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`. A test calls every
//! route it names and sends every registration field it lists, so it stays true.

use serde_json::{Value, json};

/// Every field `POST /accounts` accepts, with its schema.
pub fn registration_properties() -> Value {
    json!({
        "address": {"type": "string", "format": "email", "description": "The PEC address (also the login, unless `username` is given)."},
        "password": {"type": "string", "writeOnly": true, "description": "The mailbox password or app password. Kept in the secrets store, never returned."},
        "id": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$", "description": "Defaults to one derived from the address."},
        "username": {"type": "string", "description": "The login when it is not the address (Legalmail: the InfoCert user ID)."},
        "provider": {"type": "string", "enum": ["aruba", "poste", "legalmail", "namirial", "actalis", "register"], "description": "Fills IMAP and SMTP hosts (ports 993 and 465)."},
        "imap_host": {"type": "string"},
        "imap_port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 993},
        "smtp_host": {"type": "string"},
        "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 465},
        "poll_interval_minutes": {"type": "integer", "minimum": 1, "maximum": 60, "default": 2},
        "subject_template": {"type": "string", "default": "{{ticket.title}}", "description": "Zendesk placeholders allowed. The default of a new account's reply trigger; when not given, a registered account keeps what its trigger carries in Zendesk (an admin may edit it there)."},
        "message_template": {"type": "string", "default": "{{ticket.latest_comment_html}}", "description": "As subject_template."},
        "receipt_mode": {"type": "string", "enum": ["note", "ticket", "both"], "default": "note"},
        "outbound_attachments": {"oneOf": [{"type": "string", "enum": ["zendesk", "on", "off"]}, {"type": "boolean"}], "default": "zendesk", "description": "`zendesk` follows the Zendesk setting \"Include attachments in emails\"."},
        "enabled": {"type": "boolean", "description": "PATCH only: pause or resume the account (polling and sending; a refused send is noted on its ticket)."},
        "zendesk_instance": {"type": "string", "description": "A Zendesk instance registered with POST /zendesk-instances; absent: the deployment's default. Set at registration only."},
        "max_message_mb": {"type": "integer", "minimum": 1, "maximum": 2048, "description": "Largest PEC imported whole; a larger one becomes a ticket of its headers and stays in the mailbox. Absent: a quarter of the poller's memory."},
        "guard_notifications": {"type": "boolean", "default": false, "description": "Add the condition \"tags contain none of pec_connector and the accounts' reply tags\" to Zendesk's standard requester notification triggers, so PEC requesters get PEC only (false on PATCH removes it)."}
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn account_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Account"}}}})
}

/// `Account.status`: the mailbox's health, the cursor, the password's age and the poll stats.
fn account_status_schema() -> Value {
    json!({"type": "object", "properties": {
        "mailbox": {"type": "string"},
        "last_error": {"type": ["string", "null"]},
        "problem_since": {"type": ["string", "null"]},
        "activated": {"type": "boolean"},
        "last_uid": {"type": ["integer", "null"]},
        "password_set_at": {"type": ["string", "null"]},
        "password_age_days": {"type": ["integer", "null"]},
        "last_poll_at": {"type": ["string", "null"], "description": "When the last poll ended (successful or not)."},
        "last_success_at": {"type": ["string", "null"], "description": "When the last successful poll ended."},
        "last_poll_error": {"type": ["string", "null"], "description": "The last poll's error; cleared by a successful poll."},
        "counts": {"type": "object", "description": "What the polls did since registration.", "properties": {
            "tickets_created": {"type": "integer"},
            "comments_added": {"type": "integer"},
            "receipts_noted": {"type": "integer"},
            "unreadable": {"type": "integer"},
            "parked": {"type": "integer", "description": "Messages set aside as \"PEC non importabile\" tickets."},
            "too_large": {"type": "integer", "description": "Messages over max_message_mb, imported with their headers only."},
            "gaps": {"type": "integer", "description": "Messages the server listed but did not return."},
            "rate_limit_stops": {"type": "integer", "description": "Polls that stopped early to keep part of Zendesk's API request limit for the agents."}
        }},
        "activity": {"type": "array", "description": "What the polls did per day (UTC), oldest first: the last 30 days that had any activity (days without any are absent).", "items": {"type": "object", "properties": {
            "day": {"type": "string", "format": "date"},
            "received": {"type": "integer", "description": "Messages imported (new tickets and comments)."},
            "sent": {"type": "integer", "description": "PEC sent that the provider accepted."},
            "receipts": {"type": "integer", "description": "Receipts noted."},
            "failures": {"type": "integer", "description": "Failed polls, and messages that could not be read or imported."}
        }}},
        "last_parked": {"type": "object", "description": "The last message set aside: uid_validity, uid, ticket, reason, at."},
        "failing": {"type": "object", "description": "A message the last polls stopped at (uid_validity, uid, failures, last_error); set aside after three polls in a row."},
        "last_poll_stopped_for_rate_limit": {"type": "boolean", "description": "The last poll stopped early to keep part of Zendesk's API request limit (20% by default) for the agents; not a failure, the next poll goes on."},
        "last_poll_note": {"type": "string", "description": "When the last poll stopped early for the rate limit: what Zendesk had left and how many messages wait for the next poll."}
    }})
}

/// `GET /providers` and `GET /admin` (the console).
fn console_paths(admin: &Value) -> [(&'static str, Value); 2] {
    [
        (
            "/providers",
            json!({"get": {"summary": "The PEC providers' presets: name, label, IMAP and SMTP hosts and ports (what `provider` fills in)", "security": admin, "responses": {"200": {"description": "`{\"providers\": [{\"name\", \"label\", \"imap_host\", \"imap_port\", \"smtp_host\", \"smtp_port\"}]}`"}, "401": error_response("missing or wrong admin token")}}}),
        ),
        (
            "/admin",
            json!({"get": {"summary": "The admin console (HTML, with admin/console.js and admin/console.css): a page over this API; the admin token is typed in the page", "responses": {"200": {"description": "the page", "content": {"text/html": {}}}}}}),
        ),
    ]
}

/// The document.
pub fn document() -> Value {
    let id_param =
        json!([{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}]);
    let admin = json!([{"adminToken": []}]);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "PEC Connector for Zendesk",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Admin API (PEC accounts) and Zendesk's webhook. Admin routes need `Authorization: Bearer <admin token>`; the token is in the secrets store (`admin-token`). Every error is `{\"error\": ..., \"field\": ...}`."
        },
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer"},
                "zendeskWebhook": {"type": "http", "scheme": "bearer", "description": "The webhook's bearer token, plus X-Zendesk-Webhook-Signature (base64 HMAC-SHA256 of timestamp + body) and X-Zendesk-Webhook-Signature-Timestamp (at most 5 minutes old)."}
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
                "Registration": {"type": "object", "required": ["address", "password"], "additionalProperties": false, "properties": registration_properties()},
                "Account": {"type": "object", "description": "An account without any secret: its settings, the Zendesk objects provisioned for it (webhook, trigger category, triggers) and its status.", "properties": {
                    "id": {"type": "string"}, "address": {"type": "string"}, "username": {"type": ["string", "null"]},
                    "imap_host": {"type": "string"}, "imap_port": {"type": "integer"},
                    "smtp_host": {"type": "string"}, "smtp_port": {"type": "integer"},
                    "poll_interval_minutes": {"type": "integer"}, "enabled": {"type": "boolean"},
                    "subject_template": {"type": "string"}, "message_template": {"type": "string"},
                    "receipt_mode": {"type": "string"}, "outbound_attachments": {"type": "string"},
                    "zendesk": {"type": "object", "properties": {"webhook_id": {"type": "string"}, "trigger_category_id": {"type": "string"}, "reply_trigger_id": {"type": "integer"}, "public_reply_trigger_id": {"type": "integer"}, "fact_fields": {"type": "object", "description": "The ticket fields holding the PEC facts.", "properties": {"identificativo": {"type": "integer"}, "data": {"type": "integer"}, "gestore": {"type": "integer"}, "firma": {"type": "integer"}}}}},
                    "zendesk_links": {"type": "object", "description": "Where those objects open in Zendesk's admin center.", "properties": {"reply_trigger": {"type": "string", "format": "uri"}, "public_reply_trigger": {"type": "string", "format": "uri"}, "trigger_category": {"type": "string", "format": "uri"}, "webhook": {"type": "string", "format": "uri"}}},
                    "provider": {"type": "string", "description": "The provider preset whose IMAP server the account uses (absent: none)."},
                    "status": account_status_schema(),
                    "created_at": {"type": "string"}, "updated_at": {"type": "string"}
                }},
                "PollOutcome": {"type": "object", "properties": {"busy": {"type": "boolean"}, "baseline": {"type": "boolean"}, "tickets_created": {"type": "integer"}, "comments_added": {"type": "integer"}, "receipts_noted": {"type": "integer"}, "accepted": {"type": "integer", "description": "Of the receipts, ricevute di accettazione of PEC sent from this account."}, "duplicates": {"type": "integer"}, "unreadable": {"type": "integer"}, "parked": {"type": "integer"}, "too_large": {"type": "integer"}, "gaps": {"type": "integer"}, "skipped": {"type": "integer"}, "remaining": {"type": "integer"}, "caught_up": {"type": "boolean"}, "stopped_for_rate_limit": {"type": "boolean", "description": "Stopped early to keep part of Zendesk's API request limit for the agents; `remaining` messages wait for the next poll."}, "zendesk_requests_left": {"type": "object", "description": "Zendesk's API requests left and limit when it stopped.", "properties": {"limit": {"type": "integer"}, "remaining": {"type": "integer"}}}}}
            }
        },
        "paths": {
            "/health": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/webhooks/zendesk": {"post": {
                "summary": "Zendesk's webhook: send a PEC (template send or public reply)",
                "security": [{"zendeskWebhook": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "properties": {
                    "event": {"type": "string", "enum": ["template_send", "public_reply"]},
                    "account": {"type": "string"}, "ticket_id": {"type": "string"}, "requester": {"type": "string"},
                    "to": {"type": "string"}, "subject": {"type": "string"}, "message": {"type": "string"},
                    "comment_id": {"type": "string"}, "updated_at": {"type": "string"}}}}}},
                "responses": {
                    "200": {"description": "`status`: sent, duplicate, queued, failed or ignored"},
                    "400": error_response("malformed body, or a key twice (a placeholder broke the JSON); noted on the ticket"), "401": error_response("not Zendesk (token, signature, timestamp)"),
                    "404": error_response("unknown account or ticket; noted on the ticket"), "413": error_response("body over 256 KiB"),
                    "422": error_response("a field the connector cannot act on, a key the trigger does not have, or a disabled account; noted on the ticket"), "503": error_response("the connector's own trouble; Zendesk retries")
                }
            }},
            "/webhooks/zendesk/{instance}": {
                "parameters": [{"name": "instance", "in": "path", "required": true, "schema": {"type": "string"}}],
                "post": {"summary": "The webhook of a registered Zendesk instance (same body and answers as /webhooks/zendesk)", "security": [{"zendeskWebhook": []}],
                         "responses": {"200": {"description": "`status`: sent, duplicate, queued, failed or ignored"}, "401": error_response("not that Zendesk"), "404": error_response("unknown instance, account or ticket")}}
            },
            "/zendesk-instances": {
                "post": {
                    "summary": "Register another Zendesk instance (checked against Zendesk: the token must belong to an agent or admin)",
                    "security": admin,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object", "required": ["id"], "additionalProperties": false, "properties": {
                        "id": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$"},
                        "subdomain": {"type": "string"}, "url": {"type": "string", "format": "uri", "description": "Instead of subdomain: https://host[:port] (plain http only to 127.0.0.0/8, ::1 or localhost), without user name, path, query or fragment."},
                        "email": {"type": "string", "description": "The agent the API token belongs to."},
                        "api_token": {"type": "string", "writeOnly": true}, "oauth_token": {"type": "string", "writeOnly": true}}}}}},
                    "responses": {"201": {"description": "registered"}, "200": {"description": "replaced"}, "401": error_response("missing or wrong admin token"), "422": error_response("a field is invalid or Zendesk refused the credentials")}
                },
                "get": {"summary": "List the registered Zendesk instances", "security": admin, "responses": {"200": {"description": "`{\"zendesk_instances\": [...]}`"}, "401": error_response("missing or wrong admin token")}}
            },
            "/zendesk-instances/{id}": {
                "parameters": id_param,
                "delete": {"summary": "Remove a Zendesk instance (refused while accounts use it)", "security": admin, "responses": {"204": {"description": "removed"}, "401": error_response("missing or wrong admin token"), "404": error_response("no such instance"), "409": error_response("accounts still use it")}}
            },
            "/accounts": {
                "post": {
                    "summary": "Register a PEC account (the same address again updates it)",
                    "security": admin,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Registration"}}}},
                    "responses": {
                        "201": account_response("registered"), "200": account_response("updated"),
                        "401": error_response("missing or wrong admin token"),
                        "409": error_response("the id belongs to another address, or no new account fits under the quota of poll schedules (the message names the quota and how to raise it; nothing was created)"),
                        "422": error_response("a field is invalid, or the provider refused the login (named in `field`)"),
                        "502": error_response("Zendesk refused the provisioning"),
                        "503": error_response("another run kept the mailbox busy (the account is saved without its starting point: register it again once that run is over), or a service the connector uses did not answer")
                    }
                },
                "get": {"summary": "List accounts", "security": admin, "responses": {"200": {"description": "`{\"accounts\": [Account]}`"}, "401": error_response("missing or wrong admin token")}}
            },
            "/accounts/{id}": {
                "parameters": id_param,
                "get": {"summary": "One account with its status", "security": admin, "responses": {"200": account_response("the account"), "401": error_response("missing or wrong admin token"), "404": error_response("no such account")}},
                "patch": {
                    "summary": "Change an account (a new password is checked by logging in); the triggers and schedule change in place, keeping what an admin added to the triggers",
                    "security": admin,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Registration"}}}},
                    "responses": {"200": account_response("changed"), "401": error_response("missing or wrong admin token"), "404": error_response("no such account"), "422": error_response("a field is invalid or the login was refused")}
                },
                "delete": {"summary": "Remove an account: schedule, triggers, secret and state (the tickets stay)", "security": admin, "responses": {"204": {"description": "removed"}, "401": error_response("missing or wrong admin token"), "404": error_response("no such account")}}
            },
            "/accounts/{id}/poll": {
                "parameters": id_param,
                "post": {"summary": "Read the mailbox now", "security": admin, "responses": {"200": {"description": "what the poll did", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PollOutcome"}}}}, "401": error_response("missing or wrong admin token"), "404": error_response("no such account")}}
            }
        }
    });
    for (path, item) in console_paths(&admin) {
        doc["paths"][path] = item;
    }
    doc
}
