//! What the connector creates in Zendesk, idempotently: found by the id it saved, else by name,
//! else created; changed in place; and only its own parts of a trigger are ever rewritten.
//!
//! * The webhook "PEC Connector" (one per Zendesk instance): our api's URL, a bearer token we
//!   generate (secret `webhook-bearer-token`); Zendesk's signing secret is copied to the secret
//!   `webhook-signing-secret`.
//! * The trigger category "PEC Connector".
//! * Per account, "Reply by PEC Connector [address]": when the ticket carries the tag
//!   `pec_connector_reply_<address without @>`, call the webhook with the account's template,
//!   remove the tag (as the established product does) and add `pec_connector` (so the guarded
//!   standard notifications leave the ticket alone). The body's `subject` and `message` are the
//!   account's templates when the trigger is created or an admin sets them through the API;
//!   otherwise what an admin edited in Zendesk stays (and is read back into the account).
//! * The ticket fields "PEC identificativo", "PEC data certificazione", "PEC gestore" and
//!   "PEC firma" (one set per Zendesk instance, found by id or title): a new PEC ticket carries
//!   its facts there. Never removed: the tickets keep them.
//! * Per account, "Public reply by PEC Connector [address]": an agent's public comment on a
//!   ticket of this account's PEC (tag `pec_connector_<address without @>`) calls the webhook,
//!   unless the same update carries the reply tag. `current_via_id is not 5` keeps the
//!   connector's own API updates from firing it.

use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use zendesk::{Condition, Conditions, TriggerAction, TriggerSpec, WebhookSpec, ZendeskError};

use crate::admin::{Admin, AdminError};
use crate::domain::tags::{TAG, account_tag};
use crate::domain::{Account, Fact, FactFields, SecretName, ZendeskObjects};
use crate::secrets::SecretsError;

pub const WEBHOOK_NAME: &str = "PEC Connector";
pub const CATEGORY_NAME: &str = "PEC Connector";

pub fn reply_tag(account: &Account) -> String {
    crate::domain::tags::reply_tag(account.address.as_str())
}

pub fn reply_title(account: &Account) -> String {
    format!("Reply by PEC Connector [{}]", account.address)
}

pub fn public_reply_title(account: &Account) -> String {
    format!("Public reply by PEC Connector [{}]", account.address)
}

/// The body of "Reply by PEC Connector": the fields `outbound::webhook::parse` reads (its
/// `TEMPLATE_KEYS`), with the account's templates.
pub fn reply_body(account: &Account) -> String {
    reply_body_with(
        account,
        &account.subject_template,
        &account.message_template,
    )
}

fn reply_body_with(account: &Account, subject: &str, message: &str) -> String {
    json!({
        "account": account.id.as_str(),
        "ticket_id": "{{ticket.id}}",
        "requester": "{{ticket.requester.email}}",
        "subject": subject,
        "message": message,
        "updated_at": "{{ticket.updated_at_with_timestamp}}",
    })
    .to_string()
}

/// The `subject` and `message` of the reply trigger's body as it is in Zendesk (an admin may
/// have edited them there: the seed's documented way to change the outbound text).
pub fn templates_in(trigger: &TriggerSpec, webhook: &str) -> Option<(String, String)> {
    trigger
        .actions
        .iter()
        .filter(|a| our_action(a, webhook, None))
        .filter_map(|a| a.value.get(1).and_then(Value::as_str))
        .filter_map(|body| serde_json::from_str::<serde_json::Map<String, Value>>(body).ok())
        .find_map(|m| {
            let subject = m.get("subject")?.as_str()?.to_owned();
            let message = m.get("message")?.as_str()?.to_owned();
            Some((subject, message))
        })
}

pub fn public_reply_body(account: &Account) -> String {
    json!({
        "event": "public_reply",
        "account": account.id.as_str(),
        "ticket_id": "{{ticket.id}}",
        "updated_at": "{{ticket.updated_at_with_timestamp}}",
    })
    .to_string()
}

/// The connector's own conditions and actions of the reply trigger, with this body.
fn reply_parts(
    account: &Account,
    webhook: &str,
    body: &str,
) -> (Vec<Condition>, Vec<TriggerAction>) {
    let tag = reply_tag(account);
    (
        vec![Condition::new("current_tags", "includes", tag.clone())],
        vec![
            TriggerAction::notification_webhook(webhook, body),
            TriggerAction::new("remove_tags", tag),
            TriggerAction::new("current_tags", TAG),
        ],
    )
}

fn public_reply_parts(account: &Account, webhook: &str) -> (Vec<Condition>, Vec<TriggerAction>) {
    (
        vec![
            Condition::new("update_type", "is", "Change"),
            Condition::new("comment_is_public", "is", "true"),
            Condition::new(
                "current_tags",
                "includes",
                account_tag(account.address.as_str()),
            ),
            Condition::new("current_tags", "not_includes", reply_tag(account)),
            Condition::new("role", "is_not", "end_user"),
            Condition::new("current_via_id", "is_not", "5"),
        ],
        vec![TriggerAction::notification_webhook(
            webhook,
            &public_reply_body(account),
        )],
    )
}

/// Whether an action is one of ours: a call to our webhook, the removal of our tag, or (on the
/// reply trigger) the `pec_connector` tag it adds.
fn our_action(a: &TriggerAction, webhook: &str, tag: Option<&str>) -> bool {
    match a.field.as_str() {
        "notification_webhook" => a.value.get(0).and_then(Value::as_str) == Some(webhook),
        "remove_tags" => tag.is_some_and(|t| a.value.as_str() == Some(t)),
        "current_tags" => tag.is_some() && a.value.as_str() == Some(TAG),
        _ => false,
    }
}

/// Ours first, then whatever an admin added (kept as it was).
fn merged(
    current: Option<TriggerSpec>,
    title: String,
    category: &str,
    (conditions, actions): (Vec<Condition>, Vec<TriggerAction>),
    webhook: &str,
    tag: Option<&str>,
) -> TriggerSpec {
    let mut spec = TriggerSpec {
        title,
        active: true,
        category_id: Some(category.to_owned()),
        conditions: Conditions {
            all: conditions.clone(),
            any: Vec::new(),
        },
        actions: actions.clone(),
        description: Some(
            "Created by the PEC Connector. You may add conditions and actions: the connector \
             changes only its own."
                .to_owned(),
        ),
    };
    if let Some(current) = current {
        spec.active = current.active;
        spec.description = current.description.or(spec.description);
        spec.conditions.all.extend(
            current
                .conditions
                .all
                .into_iter()
                .filter(|c| !conditions.contains(c)),
        );
        spec.conditions.any = current.conditions.any;
        spec.actions.extend(
            current
                .actions
                .into_iter()
                .filter(|a| !our_action(a, webhook, tag)),
        );
    }
    spec
}

/// What the reply trigger's `subject` and `message` become: the values set now (a new account,
/// or an admin setting them through the API), else what the trigger in Zendesk has (an admin may
/// have edited them there), else the account's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Templates {
    pub subject: Option<String>,
    pub message: Option<String>,
}

/// Creates or updates everything the account needs in Zendesk. Returns the objects and the
/// templates the reply trigger now carries.
pub async fn ensure(
    admin: &Admin,
    account: &Account,
    templates: &Templates,
    deadline: Instant,
) -> Result<(ZendeskObjects, (String, String)), AdminError> {
    let webhook = ensure_webhook(admin, deadline).await?;
    let category = ensure_category(admin, deadline).await?;
    let tag = reply_tag(account);
    let current = find_trigger(
        admin,
        account.zendesk.reply_trigger_id,
        &reply_title(account),
        deadline,
    )
    .await?;
    let in_zendesk = current
        .as_ref()
        .and_then(|t| templates_in(&t.spec(), &webhook));
    let chosen = (
        templates
            .subject
            .clone()
            .or_else(|| in_zendesk.as_ref().map(|t| t.0.clone()))
            .unwrap_or_else(|| account.subject_template.clone()),
        templates
            .message
            .clone()
            .or_else(|| in_zendesk.as_ref().map(|t| t.1.clone()))
            .unwrap_or_else(|| account.message_template.clone()),
    );
    let body = reply_body_with(account, &chosen.0, &chosen.1);
    let reply = Wanted {
        current,
        title: reply_title(account),
        parts: reply_parts(account, &webhook, &body),
        tag: Some(&tag),
    };
    let public = Wanted {
        current: find_trigger(
            admin,
            account.zendesk.public_reply_trigger_id,
            &public_reply_title(account),
            deadline,
        )
        .await?,
        title: public_reply_title(account),
        parts: public_reply_parts(account, &webhook),
        tag: None,
    };
    let reply = ensure_trigger(admin, reply, &category, &webhook, deadline).await?;
    let public = ensure_trigger(admin, public, &category, &webhook, deadline).await?;
    let fact_fields = ensure_fact_fields(admin, account.zendesk.fact_fields, deadline).await?;
    Ok((
        ZendeskObjects {
            webhook_id: Some(webhook),
            trigger_category_id: Some(category),
            reply_trigger_id: Some(reply),
            public_reply_trigger_id: Some(public),
            fact_fields: Some(fact_fields),
        },
        chosen,
    ))
}

/// A trigger by the id saved for it, else by title.
async fn find_trigger(
    admin: &Admin,
    saved: Option<u64>,
    title: &str,
    deadline: Instant,
) -> Result<Option<zendesk::Trigger>, AdminError> {
    let z = &admin.zendesk;
    if let Some(id) = saved {
        match z.get_trigger(id, deadline).await {
            Ok(t) => return Ok(Some(t)),
            Err(ZendeskError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(z.list_triggers(None, deadline)
        .await?
        .into_iter()
        .find(|t| t.title == title))
}

/// One of the account's triggers as the connector wants it.
struct Wanted<'a> {
    /// The trigger as it is in Zendesk, if it exists.
    current: Option<zendesk::Trigger>,
    title: String,
    parts: (Vec<Condition>, Vec<TriggerAction>),
    /// The tag its actions remove, if any.
    tag: Option<&'a str>,
}

/// Creates the trigger, or changes the existing one in place keeping what an admin added.
async fn ensure_trigger(
    admin: &Admin,
    wanted: Wanted<'_>,
    category: &str,
    webhook: &str,
    deadline: Instant,
) -> Result<u64, AdminError> {
    let z = &admin.zendesk;
    let spec = merged(
        wanted.current.as_ref().map(|t| t.spec()),
        wanted.title,
        category,
        wanted.parts,
        webhook,
        wanted.tag,
    );
    match wanted.current {
        Some(t) => {
            if spec != t.spec() {
                z.update_trigger(t.id, &spec, deadline).await?;
            }
            Ok(t.id)
        }
        None => Ok(z.create_trigger(&spec, deadline).await?.id),
    }
}

/// The PEC-facts ticket fields: each by the id saved for it, else by title, else created (a
/// text field agents see and end users do not). Never removed with the accounts: the tickets
/// keep their facts.
async fn ensure_fact_fields(
    admin: &Admin,
    saved: Option<FactFields>,
    deadline: Instant,
) -> Result<FactFields, AdminError> {
    let z = &admin.zendesk;
    let existing: Vec<zendesk::TicketField> = z
        .list_ticket_fields(deadline)
        .await?
        .into_iter()
        .filter(|f| f.active && f.kind == "text")
        .collect();
    let mut ids = [0u64; 4];
    for (slot, fact) in ids.iter_mut().zip(Fact::ALL) {
        let by_id = saved
            .map(|s| s.id(fact))
            .filter(|id| existing.iter().any(|f| f.id == *id));
        let by_title = || {
            existing
                .iter()
                .find(|f| f.title == fact.title())
                .map(|f| f.id)
        };
        *slot = match by_id.or_else(by_title) {
            Some(id) => id,
            None => {
                let spec = zendesk::TicketFieldSpec {
                    kind: "text".to_owned(),
                    title: fact.title().to_owned(),
                    agent_description: Some(crate::render::fact_description(fact).to_owned()),
                    visible_in_portal: false,
                    editable_in_portal: false,
                    active: true,
                };
                z.create_ticket_field(&spec, deadline).await?.id
            }
        };
    }
    let [identificativo, data, gestore, firma] = ids;
    Ok(FactFields {
        identificativo,
        data,
        gestore,
        firma,
    })
}

async fn ensure_category(admin: &Admin, deadline: Instant) -> Result<String, AdminError> {
    let z = &admin.zendesk;
    if let Some(c) = z
        .list_trigger_categories(deadline)
        .await?
        .into_iter()
        .find(|c| c.name == CATEGORY_NAME)
    {
        return Ok(c.id);
    }
    Ok(z.create_trigger_category(CATEGORY_NAME, deadline).await?.id)
}

/// The names of the webhook's bearer token and signing secret on `admin`'s instance.
pub fn webhook_secret_names(admin: &Admin) -> (SecretName, SecretName) {
    match &admin.instance {
        None => (
            SecretName::WebhookBearerToken,
            SecretName::WebhookSigningSecret,
        ),
        Some(i) => (
            SecretName::InstanceWebhookBearerToken(i.clone()),
            SecretName::InstanceWebhookSigningSecret(i.clone()),
        ),
    }
}

/// The webhook (by name), pointed at our URL with our bearer token; its signing secret saved.
async fn ensure_webhook(admin: &Admin, deadline: Instant) -> Result<String, AdminError> {
    let z = &admin.zendesk;
    let (bearer_name, signing_name) = webhook_secret_names(admin);
    let bearer = match admin.secrets.get(&bearer_name).await {
        Ok(token) => token,
        Err(SecretsError::NotFound { .. }) => {
            let token = new_token();
            admin.secrets.put(&bearer_name, &token).await?;
            token
        }
        Err(e) => return Err(e.into()),
    };
    let spec = WebhookSpec::for_triggers(
        WEBHOOK_NAME,
        admin.options.webhook_url.clone(),
        Some(bearer),
    );
    let existing = z
        .list_webhooks(Some(WEBHOOK_NAME), deadline)
        .await?
        .into_iter()
        .find(|w| w.name == WEBHOOK_NAME);
    let id = match existing {
        Some(w) => {
            // The token cannot be read back to compare: send the settings again.
            z.update_webhook(&w.id, &spec, deadline).await?;
            w.id
        }
        None => z.create_webhook(&spec, deadline).await?.id,
    };
    let signing = z.webhook_signing_secret(&id, deadline).await?;
    let stored = admin.secrets.get(&signing_name).await;
    if !matches!(&stored, Ok(s) if s.expose_secret() == signing.expose_secret()) {
        admin.secrets.put(&signing_name, &signing).await?;
    }
    Ok(id)
}

/// The condition that keeps Zendesk's own e-mail notifications away from PEC requesters: the
/// ticket carries none of `pec_connector` (every PEC ticket, and every ticket a template PEC
/// left from) and the accounts' reply tags (a ticket about to send one, in the same update).
pub fn guard_condition(reply_tags: &[String]) -> Condition {
    let mut tags = reply_tags.to_vec();
    tags.sort();
    tags.dedup();
    let mut value = TAG.to_owned();
    for t in tags {
        value.push(' ');
        value.push_str(&t);
    }
    Condition::new("current_tags", "not_includes", value)
}

/// Whether a condition is the connector's guard (of any set of accounts).
fn is_guard(c: &Condition) -> bool {
    c.field == "current_tags"
        && c.operator == "not_includes"
        && c.value.as_str().and_then(|v| v.split_whitespace().next()) == Some(TAG)
}

/// Whether a trigger is one of Zendesk's standard notifications to the requester (it e-mails the
/// requester, with or without CCs).
fn notifies_requester(actions: &[TriggerAction]) -> bool {
    actions.iter().any(|a| {
        a.field == "notification_user"
            && matches!(
                a.value.get(0).and_then(Value::as_str),
                Some("requester_id" | "requester_and_ccs")
            )
    })
}

/// What to do with the guard on the standard notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Add it (or bring it up to date) on every one.
    On,
    /// Remove it from every one.
    Off,
    /// Bring it up to date where it is (the accounts changed).
    Refresh,
}

/// Adds, removes or refreshes the guard condition on every active trigger that notifies the
/// requester, outside the connector's category (reference §5.3 (c)): Zendesk's "Notify requester
/// and CCs of comment update", "Notify requester of new proactive ticket", "Notify requester of
/// solved request" and any others like them. `reply_tags` are those of every account of this
/// Zendesk. Returns the triggers changed.
pub async fn guard_notifications(
    admin: &Admin,
    guard: Guard,
    reply_tags: &[String],
    deadline: Instant,
) -> Result<Vec<u64>, AdminError> {
    let z = &admin.zendesk;
    let ours: Vec<String> = z
        .list_trigger_categories(deadline)
        .await?
        .into_iter()
        .filter(|c| c.name == CATEGORY_NAME)
        .map(|c| c.id)
        .collect();
    let wanted = guard_condition(reply_tags);
    let mut changed = Vec::new();
    for t in z.list_triggers(None, deadline).await? {
        if t.category_id.as_ref().is_some_and(|c| ours.contains(c))
            || !notifies_requester(&t.actions)
        {
            continue;
        }
        let mut spec = t.spec();
        let had = spec.conditions.all.iter().any(is_guard);
        if guard == Guard::Refresh && !had {
            continue;
        }
        spec.conditions.all.retain(|c| !is_guard(c));
        if guard != Guard::Off {
            spec.conditions.all.push(wanted.clone());
        }
        if spec == t.spec() {
            continue;
        }
        z.update_trigger(t.id, &spec, deadline).await?;
        changed.push(t.id);
    }
    Ok(changed)
}

/// Removes the account's triggers; with `last` (no other account of this Zendesk left), also
/// the guard, the webhook, the category and this Zendesk's webhook secrets. The secrets go only
/// once the webhook is gone: Zendesk never calls a webhook whose secret the connector lost.
/// What is already gone is not an error.
pub async fn remove(
    admin: &Admin,
    account: &Account,
    last: bool,
    deadline: Instant,
) -> Result<(), AdminError> {
    let z = &admin.zendesk;
    let titles = [reply_title(account), public_reply_title(account)];
    let mut ids: Vec<u64> = [
        account.zendesk.reply_trigger_id,
        account.zendesk.public_reply_trigger_id,
    ]
    .into_iter()
    .flatten()
    .collect();
    for t in z.list_triggers(None, deadline).await? {
        if titles.contains(&t.title) && !ids.contains(&t.id) {
            ids.push(t.id);
        }
    }
    for id in ids {
        gone_ok(z.delete_trigger(id, deadline).await)?;
    }
    if last {
        guard_notifications(admin, Guard::Off, &[], deadline).await?;
        for w in z.list_webhooks(Some(WEBHOOK_NAME), deadline).await? {
            if w.name == WEBHOOK_NAME {
                // Refused (a trigger an admin made still calls it): the error stops here, before
                // the secrets go.
                gone_ok(z.delete_webhook(&w.id, deadline).await)?;
            }
        }
        for c in z.list_trigger_categories(deadline).await? {
            if c.name == CATEGORY_NAME && z.list_triggers(Some(&c.id), deadline).await?.is_empty() {
                gone_ok(z.delete_trigger_category(&c.id, deadline).await)?;
            }
        }
        let (bearer, signing) = webhook_secret_names(admin);
        admin.secrets.delete(&bearer).await?;
        admin.secrets.delete(&signing).await?;
    }
    Ok(())
}

fn gone_ok(r: Result<(), ZendeskError>) -> Result<(), AdminError> {
    match r {
        Ok(()) | Err(ZendeskError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// 32 random bytes from the operating system, hex.
fn new_token() -> SecretString {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    SecretString::from(pec::encode::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        serde_json::from_value(json!({
            "id": "protocollo", "address": "protocollo@pec.comune.it",
            "imap": {"host": "imaps.pec.aruba.it", "port": 993},
            "smtp": {"host": "smtps.pec.aruba.it", "port": 465},
            "poll_interval": 2, "enabled": true, "password_secret": "account/protocollo",
            "subject_template": "{{ticket.title}}", "message_template": "Testo \"citato\"",
            "created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_reply_body_is_what_the_webhook_parses() {
        let a = account();
        let body: Value = serde_json::from_str(&reply_body(&a)).unwrap();
        assert_eq!(body["account"], "protocollo");
        assert_eq!(body["message"], "Testo \"citato\"");
        assert_eq!(reply_tag(&a), "pec_connector_reply_protocollopec.comune.it");
        assert_eq!(
            reply_title(&a),
            "Reply by PEC Connector [protocollo@pec.comune.it]"
        );
    }

    #[test]
    fn an_update_keeps_what_an_admin_added_and_replaces_our_parts() {
        let a = account();
        let first = merged(
            None,
            reply_title(&a),
            "10",
            reply_parts(&a, "W1", &reply_body(&a)),
            "W1",
            Some(&reply_tag(&a)),
        );
        let mut by_hand = first.clone();
        by_hand
            .conditions
            .all
            .push(Condition::new("status", "less_than", "solved"));
        by_hand.actions.push(TriggerAction::new("status", "solved"));
        by_hand.active = false;
        let mut b = a.clone();
        b.message_template = "Nuovo testo".to_owned();
        let second = merged(
            Some(by_hand),
            reply_title(&b),
            "10",
            reply_parts(&b, "W1", &reply_body(&b)),
            "W1",
            Some(&reply_tag(&b)),
        );
        assert_eq!(second.conditions.all.len(), 2);
        assert_eq!(
            second.conditions.all[1],
            Condition::new("status", "less_than", "solved")
        );
        assert_eq!(second.actions.len(), 4, "{:?}", second.actions);
        assert!(
            second.actions[0].value[1]
                .as_str()
                .unwrap()
                .contains("Nuovo testo")
        );
        assert_eq!(second.actions[3], TriggerAction::new("status", "solved"));
        assert!(!second.active, "deactivated by hand stays so");
    }

    #[test]
    fn templates_edited_in_zendesk_are_read_back() {
        let a = account();
        let mut spec = merged(
            None,
            reply_title(&a),
            "10",
            reply_parts(&a, "W1", &reply_body(&a)),
            "W1",
            Some(&reply_tag(&a)),
        );
        assert_eq!(
            templates_in(&spec, "W1"),
            Some(("{{ticket.title}}".to_owned(), "Testo \"citato\"".to_owned()))
        );
        let edited = reply_body_with(&a, "Oggetto a mano", "<p>Testo a mano</p>");
        spec.actions[0] = TriggerAction::notification_webhook("W1", &edited);
        assert_eq!(
            templates_in(&spec, "W1"),
            Some((
                "Oggetto a mano".to_owned(),
                "<p>Testo a mano</p>".to_owned()
            ))
        );
        assert_eq!(templates_in(&spec, "other-webhook"), None);
    }

    #[test]
    fn the_guard_names_pec_tickets_and_every_reply_tag() {
        let g = guard_condition(&[
            "pec_connector_reply_b".into(),
            "pec_connector_reply_a".into(),
        ]);
        assert_eq!(
            g.value,
            "pec_connector pec_connector_reply_a pec_connector_reply_b"
        );
        assert!(is_guard(&g));
        assert!(is_guard(&guard_condition(&[])));
        assert!(!is_guard(&Condition::new(
            "current_tags",
            "not_includes",
            "vip"
        )));
        assert!(!is_guard(&Condition::new(
            "current_tags",
            "includes",
            "pec_connector"
        )));
    }
}
