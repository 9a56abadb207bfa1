//! Webhooks, trigger categories and triggers of the simulated account (reference §4, §5).
//!
//! Choices where the contract is silent (unverified against Zendesk): webhook and trigger
//! validation errors are `422 RecordInvalid` with `details` naming the field, like tickets;
//! trigger categories answer with the OAS shape `{"errors": [{"code", "title"}]}`
//! (`400 InvalidTriggerCategory`, `404 TriggerCategoryNotFound`, `400 TriggerCategoryNotEmpty`
//! for a category that still holds any trigger, active or not); a webhook that a trigger still
//! calls cannot be deleted (`422`, details under `base`); `PUT` on a webhook replaces every
//! field, so an omitted `authentication` removes it, while `PATCH` keeps what is not sent.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{ApiError, State, cursor_window, page_size, timestamp};

/// A webhook as configured, including the credentials the client sent (Zendesk never returns
/// them; tests read them here).
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// 26 characters, ULID-like (`01H…`), in creation order.
    pub id: String,
    pub name: String,
    pub endpoint: String,
    pub http_method: String,
    pub request_format: String,
    pub status: String,
    pub subscriptions: Vec<String>,
    /// The `authentication` object as sent (`type`, `data`, `add_position`), if any.
    pub authentication: Option<Value>,
    pub description: Option<String>,
    /// Generated at creation; served by `GET /api/v2/webhooks/{id}/signing_secret`.
    pub signing_secret: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Webhook {
    /// The bearer token Zendesk would send (`authentication.type == "bearer_token"`).
    pub fn bearer_token(&self) -> Option<&str> {
        let auth = self.authentication.as_ref()?;
        if auth["type"] != "bearer_token" {
            return None;
        }
        auth["data"]["token"].as_str()
    }
}

/// A ticket trigger category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerCategory {
    /// Numeric, served as a string (OAS `TriggerCategory.id`).
    pub id: String,
    pub name: String,
    pub position: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A ticket trigger. Conditions and actions are kept as sent (`{field, operator, value}` and
/// `{field, value}` objects).
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub id: u64,
    pub title: String,
    pub active: bool,
    pub category_id: Option<String>,
    pub all: Vec<Value>,
    pub any: Vec<Value>,
    pub actions: Vec<Value>,
    pub description: Option<String>,
    pub position: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl Trigger {
    /// The webhook ids its `notification_webhook` actions call.
    pub fn webhook_ids(&self) -> Vec<&str> {
        self.actions
            .iter()
            .filter(|a| a["field"] == "notification_webhook")
            .filter_map(|a| a["value"][0].as_str())
            .collect()
    }
}

const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const REQUEST_FORMATS: [&str; 3] = ["json", "xml", "form_encoded"];
const STATUSES: [&str; 2] = ["active", "inactive"];
const AUTH_TYPES: [&str; 3] = ["basic_auth", "bearer_token", "api_key"];

fn listed_error(status: u16, code: &str, title: &str) -> ApiError {
    ApiError {
        status,
        body: json!({"errors": [{"code": code, "title": title}]}),
    }
}

fn category_not_found() -> ApiError {
    listed_error(
        404,
        "TriggerCategoryNotFound",
        "Category can\u{2019}t be found. Check the ID and try again.",
    )
}

pub(super) fn object_under<'a>(
    request: &'a Value,
    key: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    request
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_request("InvalidValue", &format!("{key}: parameter missing")))
}

fn blank(field: &str) -> ApiError {
    let label = capitalized(field);
    ApiError::invalid(field, "BlankValue", &format!("{label}: cannot be blank"))
}

fn invalid(field: &str, why: &str) -> ApiError {
    let label = capitalized(field);
    ApiError::invalid(field, "InvalidValue", &format!("{label}: {why}"))
}

fn capitalized(field: &str) -> String {
    let mut chars = field.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn non_blank(input: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    match input.get(field).and_then(Value::as_str) {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(blank(field)),
    }
}

fn one_of(input: &Map<String, Value>, field: &str, allowed: &[&str]) -> Result<String, ApiError> {
    let value = non_blank(input, field)?;
    if allowed.contains(&value.as_str()) {
        Ok(value)
    } else {
        Err(invalid(
            field,
            &format!("{value:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

/// A category id as sent: a string, or a number read as its digits.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn encode_key(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("k{key}"))
}

fn decode_key(cursor: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(raw)
        .ok()?
        .strip_prefix('k')
        .map(str::to_string)
}

/// One cursor page of `items` (`(key, json)` in list order): `page[size]` (at most 100),
/// `page[after]` or `page[before]`; `keep` are the filter parameters repeated in `links`.
pub(super) fn cursor_page(
    list: &str,
    path: &str,
    items: Vec<(String, Value)>,
    query: &HashMap<String, String>,
    keep: &[(&str, &str)],
) -> Result<Value, ApiError> {
    let size = page_size(query.get("page[size]"))?;
    let (start, end) = cursor_window(items.len(), size, query, |cursor| {
        decode_key(cursor)
            .and_then(|key| items.iter().position(|(k, _)| *k == key))
            .ok_or_else(|| {
                ApiError::bad_request("InvalidPaginationParameter", "page[after] is not valid")
            })
    })?;
    let page = &items[start..end];
    let has_more = end < items.len();
    let after_cursor = page.last().map(|(k, _)| encode_key(k));
    let before_cursor = page.first().map(|(k, _)| encode_key(k));
    let filters: String = keep
        .iter()
        .map(|(k, v)| format!("&{k}={}", super::percent_encode(v)))
        .collect();
    let link = |key: &str, cursor: &Option<String>| {
        cursor
            .as_ref()
            .map(|c| format!("{path}?page[{key}]={c}&page[size]={size}{filters}"))
    };
    Ok(json!({
        list: page.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
        "meta": {
            "has_more": has_more,
            "after_cursor": after_cursor,
            "before_cursor": before_cursor,
        },
        "links": {
            "next": if has_more { link("after", &after_cursor) } else { None },
            "prev": if start > 0 { link("before", &before_cursor) } else { None },
        }
    }))
}

impl State {
    // ----- webhooks ----------------------------------------------------------------------------

    fn new_webhook_id(&mut self) -> String {
        const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
        let serial = self.next_id();
        let mut noise = super::random_token(serial).into_bytes();
        noise.truncate(12);
        let tail: String = noise
            .iter()
            .map(|b| CROCKFORD[usize::from(*b) % CROCKFORD.len()] as char)
            .collect();
        format!("01H{serial:011}{tail}")
    }

    fn new_signing_secret(&mut self) -> String {
        use base64::Engine as _;
        let mut raw = Vec::with_capacity(32);
        for _ in 0..4 {
            let salt = self.next_id();
            raw.extend_from_slice(&super::random_u64(salt).to_be_bytes());
        }
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// Checks a complete webhook object and fills `webhook` from it.
    fn apply_webhook(webhook: &mut Webhook, input: &Map<String, Value>) -> Result<(), ApiError> {
        webhook.name = non_blank(input, "name")?;
        webhook.endpoint = non_blank(input, "endpoint")?;
        if !(webhook.endpoint.starts_with("https://") || webhook.endpoint.starts_with("http://")) {
            return Err(invalid("endpoint", "must be an http(s) URL"));
        }
        webhook.http_method = one_of(input, "http_method", &HTTP_METHODS)?;
        webhook.request_format = one_of(input, "request_format", &REQUEST_FORMATS)?;
        webhook.status = one_of(input, "status", &STATUSES)?;
        let subscriptions = match input.get("subscriptions").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|s| s.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid("subscriptions", "must be strings"))?,
            _ => return Err(blank("subscriptions")),
        };
        let conditional = |subs: &[String]| subs.iter().any(|s| s == "conditional_ticket_events");
        if conditional(&subscriptions) && subscriptions.len() > 1 {
            return Err(invalid(
                "subscriptions",
                "conditional_ticket_events cannot be combined with event subscriptions",
            ));
        }
        if !webhook.subscriptions.is_empty()
            && conditional(&webhook.subscriptions) != conditional(&subscriptions)
        {
            return Err(invalid(
                "subscriptions",
                "the connection method of a webhook cannot be changed",
            ));
        }
        webhook.subscriptions = subscriptions;
        webhook.authentication = match input.get("authentication") {
            None | Some(Value::Null) => None,
            Some(auth) => Some(check_authentication(auth)?),
        };
        webhook.description = input
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_string);
        Ok(())
    }

    /// `POST /api/v2/webhooks` → `201 {"webhook": …}`.
    pub fn create_webhook(&mut self, request: &Value) -> Result<Value, ApiError> {
        let input = object_under(request, "webhook")?;
        let now = timestamp();
        let mut webhook = Webhook {
            id: String::new(),
            name: String::new(),
            endpoint: String::new(),
            http_method: String::new(),
            request_format: String::new(),
            status: String::new(),
            subscriptions: Vec::new(),
            authentication: None,
            description: None,
            signing_secret: String::new(),
            created_at: now.clone(),
            updated_at: now,
        };
        Self::apply_webhook(&mut webhook, input)?;
        webhook.id = self.new_webhook_id();
        webhook.signing_secret = self.new_signing_secret();
        let body = json!({ "webhook": self.webhook_json(&webhook) });
        self.webhooks.insert(webhook.id.clone(), webhook);
        Ok(body)
    }

    pub fn show_webhook(&self, id: &str) -> Result<Value, ApiError> {
        let webhook = self.webhooks.get(id).ok_or_else(ApiError::not_found)?;
        Ok(json!({ "webhook": self.webhook_json(webhook) }))
    }

    /// `PUT` (`merge: false`, every field replaced) or `PATCH` (`merge: true`) → `204`.
    pub fn update_webhook(
        &mut self,
        id: &str,
        request: &Value,
        merge: bool,
    ) -> Result<(), ApiError> {
        let input = object_under(request, "webhook")?;
        let mut webhook = self
            .webhooks
            .get(id)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        let mut full = if merge {
            self.webhook_json(&webhook)
                .as_object()
                .cloned()
                .unwrap_or_default()
        } else {
            Map::new()
        };
        if merge {
            full.insert(
                "authentication".into(),
                webhook.authentication.clone().unwrap_or(Value::Null),
            );
        }
        for (k, v) in input {
            full.insert(k.clone(), v.clone());
        }
        Self::apply_webhook(&mut webhook, &full)?;
        webhook.updated_at = timestamp();
        self.webhooks.insert(id.to_string(), webhook);
        Ok(())
    }

    /// `DELETE /api/v2/webhooks/{id}` → `204`; refused while a trigger calls it.
    pub fn delete_webhook(&mut self, id: &str) -> Result<(), ApiError> {
        if !self.webhooks.contains_key(id) {
            return Err(ApiError::not_found());
        }
        if let Some(trigger) = self
            .triggers
            .values()
            .find(|t| t.webhook_ids().contains(&id))
        {
            return Err(ApiError::invalid(
                "base",
                "WebhookInUse",
                &format!(
                    "Webhook is used by trigger {} ({:?}) and cannot be deleted",
                    trigger.id, trigger.title
                ),
            ));
        }
        self.webhooks.remove(id);
        Ok(())
    }

    /// `GET /api/v2/webhooks` with `filter[name_contains]`, `filter[status]` and cursor pages.
    pub fn list_webhooks(&self, query: &HashMap<String, String>) -> Result<Value, ApiError> {
        let name = query.get("filter[name_contains]").map(|n| n.to_lowercase());
        let status = query.get("filter[status]");
        let items = self
            .webhooks
            .values()
            .filter(|w| {
                name.as_ref()
                    .is_none_or(|n| w.name.to_lowercase().contains(n))
            })
            .filter(|w| status.is_none_or(|s| w.status == *s))
            .map(|w| (w.id.clone(), self.webhook_json(w)))
            .collect();
        let mut keep = Vec::new();
        if let Some(n) = query.get("filter[name_contains]") {
            keep.push(("filter[name_contains]", n.as_str()));
        }
        if let Some(s) = status {
            keep.push(("filter[status]", s.as_str()));
        }
        let path = format!("{}/api/v2/webhooks", self.base_url);
        cursor_page("webhooks", &path, items, query, &keep)
    }

    /// `GET /api/v2/webhooks/{id}/signing_secret`.
    pub fn webhook_signing_secret(&self, id: &str) -> Result<Value, ApiError> {
        let webhook = self.webhooks.get(id).ok_or_else(ApiError::not_found)?;
        Ok(json!({"signing_secret": {"algorithm": "SHA256", "secret": webhook.signing_secret}}))
    }

    /// A webhook as the API shows it: authentication without its credentials.
    fn webhook_json(&self, w: &Webhook) -> Value {
        let authentication = w
            .authentication
            .as_ref()
            .map(|a| json!({"type": a["type"], "add_position": a["add_position"]}));
        json!({
            "id": w.id,
            "name": w.name,
            "endpoint": w.endpoint,
            "http_method": w.http_method,
            "request_format": w.request_format,
            "status": w.status,
            "subscriptions": w.subscriptions,
            "authentication": authentication,
            "description": w.description,
            "created_at": w.created_at,
            "created_by": self.agent_id().to_string(),
            "updated_at": w.updated_at,
            "updated_by": self.agent_id().to_string(),
        })
    }

    // ----- trigger categories --------------------------------------------------------------

    fn category_key(id: &str) -> Option<u64> {
        id.strip_suffix(".json").unwrap_or(id).parse().ok()
    }

    /// `POST /api/v2/trigger_categories` → `200 {"trigger_category": …}` (as in the OAS).
    pub fn create_trigger_category(&mut self, request: &Value) -> Result<Value, ApiError> {
        let input = object_under(request, "trigger_category")?;
        let name = match input.get("name").and_then(Value::as_str) {
            Some(n) if !n.trim().is_empty() => n.to_string(),
            _ => {
                return Err(listed_error(
                    400,
                    "InvalidTriggerCategory",
                    "Name cannot be blank",
                ));
            }
        };
        let position = match input.get("position") {
            None | Some(Value::Null) => self
                .trigger_categories
                .values()
                .map(|c| c.position + 1)
                .max()
                .unwrap_or(0),
            Some(p) => p.as_i64().ok_or_else(|| {
                listed_error(400, "InvalidTriggerCategory", "Position must be an integer")
            })?,
        };
        let id = self.next_id();
        let now = timestamp();
        let category = TriggerCategory {
            id: id.to_string(),
            name,
            position,
            created_at: now.clone(),
            updated_at: now,
        };
        let body = json!({ "trigger_category": category_json(&category) });
        self.trigger_categories.insert(id, category);
        Ok(body)
    }

    pub fn show_trigger_category(&self, id: &str) -> Result<Value, ApiError> {
        let category = Self::category_key(id)
            .and_then(|k| self.trigger_categories.get(&k))
            .ok_or_else(category_not_found)?;
        Ok(json!({ "trigger_category": category_json(category) }))
    }

    /// `PATCH /api/v2/trigger_categories/{id}`: `name` and/or `position`.
    pub fn update_trigger_category(
        &mut self,
        id: &str,
        request: &Value,
    ) -> Result<Value, ApiError> {
        let input = object_under(request, "trigger_category")?;
        let key = Self::category_key(id).ok_or_else(category_not_found)?;
        let mut category = self
            .trigger_categories
            .get(&key)
            .cloned()
            .ok_or_else(category_not_found)?;
        if let Some(name) = input.get("name") {
            match name.as_str() {
                Some(n) if !n.trim().is_empty() => category.name = n.to_string(),
                _ => {
                    return Err(listed_error(
                        400,
                        "InvalidTriggerCategory",
                        "Name cannot be blank",
                    ));
                }
            }
        }
        if let Some(position) = input.get("position") {
            category.position = position.as_i64().ok_or_else(|| {
                listed_error(400, "InvalidTriggerCategory", "Position must be an integer")
            })?;
        }
        category.updated_at = timestamp();
        let body = json!({ "trigger_category": category_json(&category) });
        self.trigger_categories.insert(key, category);
        Ok(body)
    }

    /// `DELETE /api/v2/trigger_categories/{id}` → `204`; refused while it holds triggers.
    pub fn delete_trigger_category(&mut self, id: &str) -> Result<(), ApiError> {
        let key = Self::category_key(id)
            .filter(|k| self.trigger_categories.contains_key(k))
            .ok_or_else(category_not_found)?;
        let id = key.to_string();
        if self
            .triggers
            .values()
            .any(|t| t.category_id.as_deref() == Some(id.as_str()))
        {
            return Err(listed_error(
                400,
                "TriggerCategoryNotEmpty",
                "A category with active ticket triggers cannot be deleted.",
            ));
        }
        self.trigger_categories.remove(&key);
        Ok(())
    }

    /// `GET /api/v2/trigger_categories`: by position, then creation; cursor pages.
    pub fn list_trigger_categories(
        &self,
        query: &HashMap<String, String>,
    ) -> Result<Value, ApiError> {
        let mut categories: Vec<&TriggerCategory> = self.trigger_categories.values().collect();
        categories.sort_by_key(|c| c.position);
        let items = categories
            .into_iter()
            .map(|c| (c.id.clone(), category_json(c)))
            .collect();
        let path = format!("{}/api/v2/trigger_categories", self.base_url);
        cursor_page("trigger_categories", &path, items, query, &[])
    }

    // ----- triggers ------------------------------------------------------------------------

    /// Checks a complete trigger (as it would be stored) against the account.
    fn check_trigger(&self, trigger: &Trigger) -> Result<(), ApiError> {
        if trigger.title.trim().is_empty() {
            return Err(blank("title"));
        }
        for condition in trigger.all.iter().chain(&trigger.any) {
            let ok = condition["field"].as_str().is_some_and(|f| !f.is_empty())
                && condition["operator"]
                    .as_str()
                    .is_some_and(|o| !o.is_empty());
            if !ok {
                return Err(invalid(
                    "conditions",
                    "each condition needs a field, an operator and a value",
                ));
            }
        }
        if trigger.actions.is_empty() {
            return Err(blank("actions"));
        }
        for action in &trigger.actions {
            let Some(field) = action["field"].as_str().filter(|f| !f.is_empty()) else {
                return Err(invalid("actions", "each action needs a field and a value"));
            };
            if action.get("value").is_none() {
                return Err(invalid("actions", "each action needs a field and a value"));
            }
            if field == "notification_webhook" {
                let value = &action["value"];
                let pair = value
                    .as_array()
                    .filter(|v| v.len() == 2 && v.iter().all(Value::is_string));
                let Some(pair) = pair else {
                    return Err(invalid(
                        "actions",
                        "notification_webhook needs [webhook id, body] (two strings)",
                    ));
                };
                let id = pair[0].as_str().unwrap_or_default();
                if !self.webhooks.contains_key(id) {
                    return Err(invalid(
                        "actions",
                        &format!("notification_webhook names an unknown webhook {id:?}"),
                    ));
                }
            }
        }
        if let Some(category) = &trigger.category_id
            && Self::category_key(category)
                .is_none_or(|k| !self.trigger_categories.contains_key(&k))
        {
            return Err(invalid(
                "category_id",
                &format!("category {category:?} does not exist"),
            ));
        }
        Ok(())
    }

    /// Fills `trigger` from the fields present in `input`. `conditions` and `actions` are
    /// replaced together when either is sent (OAS `UpdateTrigger`).
    fn apply_trigger(trigger: &mut Trigger, input: &Map<String, Value>) -> Result<(), ApiError> {
        if let Some(title) = input.get("title") {
            trigger.title = title.as_str().unwrap_or_default().to_string();
        }
        if let Some(active) = input.get("active") {
            trigger.active = active
                .as_bool()
                .ok_or_else(|| invalid("active", "must be true or false"))?;
        }
        if let Some(description) = input.get("description") {
            trigger.description = description.as_str().map(str::to_string);
        }
        if let Some(category) = input.get("category_id") {
            trigger.category_id = match category {
                Value::Null => None,
                other => Some(id_text(other).ok_or_else(|| invalid("category_id", "is invalid"))?),
            };
        }
        if let Some(position) = input.get("position") {
            trigger.position = position
                .as_u64()
                .ok_or_else(|| invalid("position", "must be a number"))?;
        }
        if input.contains_key("conditions") || input.contains_key("actions") {
            let conditions = match input.get("conditions") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(c)) => c.clone(),
                Some(_) => return Err(invalid("conditions", "must be an object with all and any")),
            };
            let list = |key: &str| -> Result<Vec<Value>, ApiError> {
                match conditions.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) if items.iter().all(Value::is_object) => {
                        Ok(items.clone())
                    }
                    Some(_) => Err(invalid(
                        "conditions",
                        &format!("{key} must be an array of conditions"),
                    )),
                }
            };
            trigger.all = list("all")?;
            trigger.any = list("any")?;
            trigger.actions = match input.get("actions") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) if items.iter().all(Value::is_object) => items.clone(),
                Some(_) => return Err(invalid("actions", "must be an array of actions")),
            };
        }
        Ok(())
    }

    /// `POST /api/v2/triggers` → `201 {"trigger": …}`, placed last.
    pub fn create_trigger(&mut self, request: &Value) -> Result<Value, ApiError> {
        let input = object_under(request, "trigger")?;
        if !input.contains_key("conditions") {
            return Err(blank("conditions"));
        }
        let now = timestamp();
        let mut trigger = Trigger {
            id: 0,
            title: String::new(),
            active: true,
            category_id: None,
            all: Vec::new(),
            any: Vec::new(),
            actions: Vec::new(),
            description: None,
            position: self
                .triggers
                .values()
                .map(|t| t.position + 1)
                .max()
                .unwrap_or(1),
            created_at: now.clone(),
            updated_at: now,
        };
        Self::apply_trigger(&mut trigger, input)?;
        self.check_trigger(&trigger)?;
        trigger.id = self.next_id();
        let body = json!({ "trigger": self.trigger_json(&trigger) });
        self.triggers.insert(trigger.id, trigger);
        Ok(body)
    }

    pub fn show_trigger(&self, id: u64) -> Result<Value, ApiError> {
        let trigger = self.triggers.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(json!({ "trigger": self.trigger_json(trigger) }))
    }

    /// `PUT /api/v2/triggers/{id}` → `200 {"trigger": …}`.
    pub fn update_trigger(&mut self, id: u64, request: &Value) -> Result<Value, ApiError> {
        let input = object_under(request, "trigger")?;
        let mut trigger = self
            .triggers
            .get(&id)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        Self::apply_trigger(&mut trigger, input)?;
        self.check_trigger(&trigger)?;
        trigger.updated_at = timestamp();
        let body = json!({ "trigger": self.trigger_json(&trigger) });
        self.triggers.insert(id, trigger);
        Ok(body)
    }

    pub fn delete_trigger(&mut self, id: u64) -> Result<(), ApiError> {
        self.triggers
            .remove(&id)
            .map(|_| ())
            .ok_or_else(ApiError::not_found)
    }

    /// `GET /api/v2/triggers[?category_id=&active=]`, by position: cursor pages when a
    /// `page[…]` parameter is present, otherwise every trigger in one offset-style answer.
    pub fn list_triggers(&self, query: &HashMap<String, String>) -> Result<Value, ApiError> {
        let category = query.get("category_id");
        let active = match query.get("active").map(String::as_str) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(ApiError::bad_request("InvalidValue", "active is invalid")),
        };
        let mut triggers: Vec<&Trigger> = self
            .triggers
            .values()
            .filter(|t| category.is_none_or(|c| t.category_id.as_ref() == Some(c)))
            .filter(|t| active.is_none_or(|a| t.active == a))
            .collect();
        triggers.sort_by_key(|t| (t.position, t.id));
        if !query.keys().any(|k| k.starts_with("page[")) {
            let all: Vec<Value> = triggers.iter().map(|t| self.trigger_json(t)).collect();
            return Ok(json!({
                "count": all.len(),
                "triggers": all,
                "next_page": null,
                "previous_page": null,
            }));
        }
        let items = triggers
            .into_iter()
            .map(|t| (t.id.to_string(), self.trigger_json(t)))
            .collect();
        let mut keep = Vec::new();
        if let Some(c) = category {
            keep.push(("category_id", c.as_str()));
        }
        let path = format!("{}/api/v2/triggers", self.base_url);
        cursor_page("triggers", &path, items, query, &keep)
    }

    fn trigger_json(&self, t: &Trigger) -> Value {
        json!({
            "id": t.id,
            "url": format!("{}/api/v2/triggers/{}.json", self.base_url, t.id),
            "title": t.title,
            "raw_title": t.title,
            "active": t.active,
            "default": false,
            "category_id": t.category_id,
            "conditions": { "all": t.all, "any": t.any },
            "actions": t.actions,
            "description": t.description,
            "position": t.position,
            "created_at": t.created_at,
            "updated_at": t.updated_at,
        })
    }
}

/// Checks an `authentication` object: a known `type`, `add_position: "header"` and the `data`
/// its type needs.
fn check_authentication(auth: &Value) -> Result<Value, ApiError> {
    let bad = |why: &str| invalid("authentication", why);
    let kind = auth["type"].as_str().unwrap_or_default();
    if !AUTH_TYPES.contains(&kind) {
        return Err(bad(&format!(
            "type {kind:?} is not one of {}",
            AUTH_TYPES.join(", ")
        )));
    }
    if auth["add_position"] != "header" {
        return Err(bad("add_position must be \"header\""));
    }
    let filled = |key: &str| auth["data"][key].as_str().is_some_and(|s| !s.is_empty());
    let complete = match kind {
        "bearer_token" => filled("token"),
        "basic_auth" => filled("username") && filled("password"),
        _ => filled("name") && filled("value"),
    };
    if !complete {
        return Err(bad(&format!("data is incomplete for {kind}")));
    }
    Ok(auth.clone())
}

fn category_json(c: &TriggerCategory) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "position": c.position,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_ids_look_like_ulids_in_creation_order() {
        let mut state = State::new("http://x".into(), "a@b.it");
        let a = state.new_webhook_id();
        let b = state.new_webhook_id();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} {b}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(state.new_signing_secret(), state.new_signing_secret());
    }

    #[test]
    fn keys_round_trip_through_cursors() {
        assert_eq!(decode_key(&encode_key("01HX")).as_deref(), Some("01HX"));
        assert_eq!(decode_key("%%"), None);
    }
}
