//! A stateful Zendesk Support API simulator on loopback.
//!
//! [`ZendeskSimulator::start`] binds `127.0.0.1:0` and serves, as documented in
//! `reference/zendesk-api.md`:
//!
//! | endpoint | behaviour |
//! |---|---|
//! | `POST /api/v2/tickets` | requester found or created by e-mail; `Idempotency-Key` replays (`x-idempotency-lookup: hit/miss`), other body with a used key → `400` |
//! | `GET /api/v2/tickets?external_id=` | every ticket with that external id (not unique) |
//! | `GET /api/v2/tickets/{id}` | the ticket, or `404 RecordNotFound` |
//! | `PUT /api/v2/tickets/{id}` | comment (public or internal note, uploads), `tags` / `additional_tags` / `remove_tags`, status, subject, custom fields; response with `audit.events` |
//! | `GET /api/v2/tickets/{id}/comments` | cursor (`page[size]`, `page[after]`, `page[before]`, `sort`) or offset (`page`, `per_page`, `sort_order`) pagination |
//! | `POST /api/v2/uploads?filename=[&token=]` | raw body; several files chain on one token; token consumed by the comment that uses it |
//! | `DELETE /api/v2/uploads/{token}` | removes an unused upload |
//! | `GET /api/v2/users/me` | the user the credentials belong to (API token and OAuth token both act as the API agent), OAS `CurrentUserResponse` with `authenticity_token`; role `agent` unless changed with [`ZendeskSimulator::set_agent_role`] |
//! | `GET /api/v2/users/{id}` | the API agent (`role: agent`) or an end user created as a requester (`role: end-user`), or `404 RecordNotFound` |
//! | `GET /api/v2/account/settings` | `settings.tickets` with `email_attachments` ([`ZendeskSimulator::set_email_attachments`], default `true`) and a few other keys of the OAS example |
//! | `GET /attachments/token/{t}/?name=` | an attachment's `content_url` (no credentials needed) |
//! | `POST/GET /api/v2/webhooks` | create (`201`; required fields checked, `422` naming the field; a random signing secret); list with `filter[name_contains]`, `filter[status]` and cursor pages (`page[size]`, `page[after]`, `page[before]`) |
//! | `GET/PUT/PATCH/DELETE /api/v2/webhooks/{id}` | show (`200`, credentials never shown), replace (`204`), merge (`204`), delete (`204`; `422` while a trigger calls it) |
//! | `GET /api/v2/webhooks/{id}/signing_secret` | `{"signing_secret": {"algorithm": "SHA256", "secret": …}}` |
//! | `GET/POST /api/v2/trigger_categories`, `GET/PATCH/DELETE …/{id}` | OAS shapes (create answers `200`); errors as `{"errors": [{code, title}]}`; deleting a category that holds triggers is `400 TriggerCategoryNotEmpty` |
//! | `GET/POST /api/v2/ticket_fields`, `GET/DELETE …/{id}` | the system fields (ids 1–7) and custom ones; create `201` (`type` defaults to `text`; `422` for a blank title or unknown type); list in id order, every field or cursor pages with `page[size]`; a ticket's `custom_fields` naming no active custom field is ignored |
//! | `GET/POST /api/v2/triggers`, `GET/PUT/DELETE …/{id}` | `category_id` and `active` filters, cursor pages with `page[…]`; create `201`; `PUT` replaces conditions and actions together; `422` for a blank title, bad conditions, no actions, an unknown category or `notification_webhook` webhook |
//!
//!
//! **Triggers fire** (reference §4.2, §5, §6), as in Zendesk: after a ticket create or update the
//! active triggers are checked in `position` order (then id); a firing trigger's actions change
//! the ticket, and the cycle starts over from the top without the triggers that already fired
//! (each fires at most once per update), so a trigger can fire after another's actions made its
//! conditions true. [`ZendeskSimulator::agent_reply`] and [`ZendeskSimulator::agent_update`] (an
//! agent in the agent UI, via `web` = 0) and [`ZendeskSimulator::end_user_reply`] (an end user by
//! e-mail, via `email` = 4) always run them; API creates and updates (via `api` = 5) only after
//! [`ZendeskSimulator::set_fire_triggers`]`(true)`, so API-only tests see no calls. Every firing
//! is logged ([`ZendeskSimulator::trigger_firings`], [`ZendeskSimulator::wait_for_firings`]);
//! webhook calls can be held and released ([`ZendeskSimulator::hold_webhooks`]). A comment and
//! its ticket's `updated_at` carry the same time (one update, one audit).
//!
//! | part | supported |
//! |---|---|
//! | conditions (`all` every one, `any` at least one when not empty) | `update_type` `is`/`is_not` `Create`/`Change`; `comment_is_public` `is`/`is_not` `true`/`false`/`not_relevant` (= a comment of either kind)/`requester_can_see_comment` (= public), false without a comment; `current_tags` `includes` (any listed tag present) / `not_includes` (none present), space-separated; `role` `is`/`is_not` `end_user`/`agent`/`admin` of the updating user (the API agent for API updates; `agent` matches admins too); `current_via_id` `is`/`is_not`; `status` `is`/`is_not`. Any other field or operator: the condition is false |
//! | actions | `notification_webhook` `[id, body]`; `current_tags` (Zendesk's "add tags", `add_tags` accepted too), `remove_tags`, `set_tags`; `status`. Others are ignored |
//! | webhook call | real HTTP in a task of its own after the state lock is released; the webhook's method, one attempt, 10 s timeout; `Content-Type` from `request_format`; `X-Zendesk-Webhook-Id`, `-Invocation-Id` (unique), `-Signature-Timestamp` (RFC 3339 UTC, `…Z`), `-Signature` = base64(HMAC-SHA256(signing secret, timestamp + body)); the webhook's `bearer_token` / `basic_auth` / `api_key` header. An inactive or deleted webhook is logged as failed, not called; `GET` sends no body |
//! | body placeholders | `ticket.id`, `.title`, `.status`, `.external_id`, `.tags`, `.url`, `.via`, `.requester.id/.email/.name`, `.created_at_with_timestamp`, `.updated_at_with_timestamp`, `.latest_comment`, `.latest_public_comment` (plain body) and their `_html`, `current_user.id/.email/.name`; unknown ones render empty (Liquid); values are inserted verbatim, not JSON-escaped (§6), or JSON-escaped after [`ZendeskSimulator::set_json_escape_placeholders`]; rendered after every trigger has run, with the ticket as saved |
//!
//! Where the reference leaves a detail open, the simulator picks one and says so here
//! (unverified against Zendesk): a reused `Idempotency-Key` with another body is
//! `400 {"error": "IdempotentRequestError", …}`; only `201` answers are remembered for replay;
//! unknown or used upload tokens in a comment are `422` (details under `uploads`); an upload
//! without `filename` is `400`, with an unknown `token` `404`; a comment whose `author_id` names no user is `422`; injected `429`/`5xx` bodies are
//! `{"error": …, "description": …}`; attachment content is served without credentials.
//!
//! Every `/api/v2` request needs the simulator's credentials ([`Credentials`]): `401` with
//! `{"error": "Couldn't authenticate you"}` otherwise. Comment bodies above 64 kB are truncated
//! without error; placeholders (`{{…}}`) render in agent-authored comments and unknown ones are
//! stripped, as in Zendesk. Every authenticated answer carries `X-Rate-Limit` and
//! `X-Rate-Limit-Remaining`; an opt-in account-wide request limit
//! ([`ZendeskSimulator::set_request_limit`], e.g. the Team plan's 200 a minute, or 200 per 2 s
//! in a fast test) answers `429` with `Retry-After` beyond it. Tests inject faults
//! ([`ZendeskSimulator::fail_next`]), latency and an opt-in per-ticket update limit, and read back everything ([`ZendeskSimulator::tickets`], [`ZendeskSimulator::requests`],
//! [`ZendeskSimulator::webhooks`], [`ZendeskSimulator::triggers`], …); [`ZendeskSimulator::edit_trigger`] changes a
//! trigger by hand, as an admin would.

mod routes;
mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use state::{
    AgentUpdate, Attachment, COMMENT_BODY_LIMIT, CallOutcome, Comment, Fault, IDEMPOTENCY_WINDOW,
    MAX_COMMENTS_PER_TICKET, RecordedRequest, RequestLimit, Ticket, TicketField, TicketRefusal,
    Trigger, TriggerCategory, TriggerFiring, User, WEBHOOK_TIMEOUT, Webhook, WebhookCall,
};

use routes::Shared;

/// The credentials the simulator accepts. Test values, not secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The API agent's e-mail (Basic auth user `{agent_email}/token`).
    pub agent_email: String,
    /// The API token (Basic auth password).
    pub api_token: String,
    /// The OAuth access token (`Authorization: Bearer …`).
    pub oauth_token: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            agent_email: "api@pec-connector.test".to_string(),
            api_token: "sandbox-api-token".to_string(),
            oauth_token: "sandbox-oauth-token".to_string(),
        }
    }
}

/// A running simulator. Stops when dropped or on [`ZendeskSimulator::shutdown`].
pub struct ZendeskSimulator {
    base_url: String,
    subdomain: String,
    credentials: Credentials,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the zendesk simulator to 127.0.0.1")]
    Bind(#[source] std::io::Error),
    #[error("cannot build the http client the simulator's triggers call webhooks with")]
    Http(#[source] reqwest::Error),
}

impl ZendeskSimulator {
    /// Starts a simulator with the default [`Credentials`] on a free loopback port.
    pub async fn start() -> Result<Self, StartError> {
        Self::start_with(Credentials::default()).await
    }

    /// Starts a simulator that accepts `credentials`.
    pub async fn start_with(credentials: Credentials) -> Result<Self, StartError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let base_url = format!("http://{addr}");
        // Webhook endpoints are local in tests and the demo: never through a proxy.
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(state::WEBHOOK_TIMEOUT)
            .build()
            .map_err(StartError::Http)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state::State::new(
                base_url.clone(),
                &credentials.agent_email,
            )),
            credentials: credentials.clone(),
            http,
            runtime: tokio::runtime::Handle::current(),
        });
        let app = routes::router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "zendesk simulator stopped with an error");
            }
        });
        Ok(ZendeskSimulator {
            base_url,
            subdomain: "pec-sandbox".to_string(),
            credentials,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:{port}`: what `https://{subdomain}.zendesk.com` is in production.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The simulated account's subdomain (informational; the simulator answers on any host).
    pub fn subdomain(&self) -> &str {
        &self.subdomain
    }

    /// The credentials the simulator accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The user id of the API agent the credentials belong to.
    pub fn agent_id(&self) -> u64 {
        self.shared.lock().agent_id()
    }

    /// Stops serving and waits (up to 5 s) for open connections to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }

    // ----- fault and latency injection -------------------------------------------------------

    /// The next `n` requests (any path) are answered with `fault` instead of being served.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        self.shared
            .lock()
            .faults
            .extend(std::iter::repeat_n(fault, n));
    }

    /// The next `n` requests get `429` with `Retry-After: secs` and `ratelimit-reset: secs`.
    pub fn rate_limit_next(&self, n: usize, secs: u64) {
        self.fail_next(
            n,
            Fault::RateLimit {
                retry_after: Some(secs),
                reset: Some(secs),
            },
        );
    }

    /// The next `n` requests get `503 Service Unavailable`.
    pub fn unavailable_next(&self, n: usize) {
        self.fail_next(n, Fault::Status(503));
    }

    /// New tickets whose requester is `email` are refused from now on, as `refusal` says (a
    /// suspended requester: `422` every time; or an answer cut short); `None` lifts it.
    pub fn refuse_tickets_from(&self, email: &str, refusal: Option<TicketRefusal>) {
        let email = email.trim().to_ascii_lowercase();
        let mut state = self.shared.lock();
        state.ticket_refusals.retain(|(e, _)| *e != email);
        if let Some(r) = refusal {
            state.ticket_refusals.push((email, r));
        }
    }

    /// Drops the faults not consumed yet.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Every following request waits `latency` before it is served (zero to turn off).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Turns on Zendesk's Update Ticket limit (30 per 10 minutes per ticket in production,
    /// reference §7) with the given numbers: one update more gets `429` with `Retry-After` until
    /// the oldest update leaves the window. `None` (the default) turns it off.
    pub fn set_ticket_update_limit(&self, limit: Option<(usize, Duration)>) {
        self.shared.lock().update_limit = limit;
    }

    /// Turns on Zendesk's account-wide request limit (200 a minute on the Team plan, reference
    /// §7) with the given numbers, its windows starting now: a request more in a window gets
    /// `429` with `Retry-After` (whole seconds to the window's end). Every authenticated answer
    /// carries `X-Rate-Limit` and `X-Rate-Limit-Remaining` either way; `None` (the default)
    /// turns the limit off, and the answers then report 699 of 700 left.
    /// [`RecordedRequest::rate_window`] says which window each request counted in.
    pub fn set_request_limit(&self, limit: Option<RequestLimit>) {
        self.shared.lock().set_request_limit(limit);
    }

    /// Forgets every `Idempotency-Key`, as if Zendesk's 2-hour window had passed: the same key
    /// then creates a new ticket (reference §2.2).
    pub fn expire_idempotency_keys(&self) {
        self.shared.lock().expire_idempotency_keys();
    }

    /// Turns the account's "Include attachments in emails" setting
    /// (`settings.tickets.email_attachments`) on or off. On by default.
    pub fn set_email_attachments(&self, enabled: bool) {
        self.shared.lock().email_attachments = enabled;
    }

    /// Files uploaded from now on get a `content_url` under `base` (e.g. another host, as
    /// Zendesk's attachment storage may be) instead of the simulator's own URL; `None` goes
    /// back to the simulator's. The content stays served by this simulator only.
    pub fn set_attachment_base_url(&self, base: Option<String>) {
        self.shared.lock().attachment_base_url = base;
    }

    /// Changes the API agent's role (`agent` by default), as an admin would: e.g. `end-user`,
    /// after which `GET /api/v2/users/me` (and `GET /api/v2/users/{agent_id}`) report that role.
    /// The credentials keep working.
    pub fn set_agent_role(&self, role: &str) {
        self.shared.lock().set_agent_role(role);
    }

    /// Sets a ticket's status directly, as an agent would (e.g. `closed`, after which updates are
    /// refused with `422`). Returns false when there is no such ticket.
    pub fn set_status(&self, id: u64, status: &str) -> bool {
        match self.shared.lock().tickets.get_mut(&id) {
            Some(ticket) => {
                ticket.status = status.to_string();
                true
            }
            None => false,
        }
    }

    // ----- triggers ----------------------------------------------------------------------------

    /// Whether ticket creates and updates made through the API (via `api`, id 5) run the
    /// triggers, as they do in Zendesk. Off by default, so tests of the API alone see no webhook
    /// calls; [`ZendeskSimulator::agent_reply`] always runs them.
    pub fn set_fire_triggers(&self, on: bool) {
        self.shared.lock().fire_triggers = on;
    }

    /// The API agent replies on ticket `id` in the agent UI (via `web`, id 0): a public reply or,
    /// with `public: false`, an internal note. `updated_at` moves and the triggers run; their
    /// webhook calls go out in the background (see [`ZendeskSimulator::wait_for_firings`]).
    /// Returns the comment id, or `None` when there is no such ticket or it is closed.
    pub fn agent_reply(&self, ticket_id: u64, body: &str, public: bool) -> Option<u64> {
        self.agent_update(
            ticket_id,
            AgentUpdate {
                comment: Some((body.to_string(), public)),
                ..AgentUpdate::default()
            },
        )?
    }

    /// One update by the API agent in the agent UI (via `web`): a comment, tags added or
    /// removed and a status, together (e.g. a public reply and a tag in one click), then the
    /// triggers run once for it. Returns `Some(comment id)` (`Some(None)` without a comment), or
    /// `None` when there is no such ticket or it is closed.
    pub fn agent_update(&self, ticket_id: u64, change: AgentUpdate) -> Option<Option<u64>> {
        let (comment_id, calls) = {
            let mut state = self.shared.lock();
            let update = state.agent_update(ticket_id, &change)?;
            (update.comment_id, state.run_triggers(&update))
        };
        state::dispatch(&self.shared, calls);
        Some(comment_id)
    }

    /// A public comment by the end user `email` (created if unknown, e.g. a CC) arriving by
    /// e-mail (via `email`, id 4); the triggers run for the end user's update. Returns the
    /// comment id, or `None` when there is no such ticket or it is closed.
    pub fn end_user_reply(&self, ticket_id: u64, email: &str, body: &str) -> Option<u64> {
        let (comment_id, calls) = {
            let mut state = self.shared.lock();
            let update = state.end_user_comment(ticket_id, email, body)?;
            (update.comment_id, state.run_triggers(&update))
        };
        state::dispatch(&self.shared, calls);
        comment_id
    }

    /// Whether placeholder values are JSON-escaped when webhook bodies are rendered. Off by
    /// default: values are inserted verbatim, as the reference says Zendesk does (§6); on, a
    /// quote in a ticket's subject stays inside its JSON string.
    pub fn set_json_escape_placeholders(&self, on: bool) {
        self.shared.lock().json_escape_placeholders = on;
    }

    /// Holds every webhook call from now on (they queue, in order) until
    /// [`ZendeskSimulator::release_webhooks`]: lets a test make several updates before the
    /// connector hears of the first.
    pub fn hold_webhooks(&self) {
        self.shared.lock().hold_webhooks = true;
    }

    /// Sends the held webhook calls (each in a task of its own, as Zendesk does: in no
    /// guaranteed order) and stops holding.
    pub fn release_webhooks(&self) {
        let calls = {
            let mut state = self.shared.lock();
            state.hold_webhooks = false;
            std::mem::take(&mut state.held_calls)
        };
        state::dispatch(&self.shared, calls);
    }

    /// Every trigger firing so far, in order, with its webhook calls (a call's
    /// [`WebhookCall::outcome`] is [`CallOutcome::Pending`] until it returns).
    pub fn trigger_firings(&self) -> Vec<TriggerFiring> {
        self.shared.lock().firings.clone()
    }

    /// Waits until at least `n` trigger firings are logged with every webhook call returned, or
    /// `timeout` passes; returns how many complete firings there are.
    pub async fn wait_for_firings(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let complete = self
                .shared
                .lock()
                .firings
                .iter()
                .filter(|f| f.is_complete())
                .count();
            if complete >= n || tokio::time::Instant::now() >= deadline {
                return complete;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // ----- read-back for tests ----------------------------------------------------------------

    /// All tickets, by id.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.shared.lock().tickets.values().cloned().collect()
    }

    pub fn ticket(&self, id: u64) -> Option<Ticket> {
        self.shared.lock().tickets.get(&id).cloned()
    }

    /// The comments of ticket `id`, oldest first (empty when there is no such ticket).
    pub fn comments(&self, id: u64) -> Vec<Comment> {
        self.ticket(id).map(|t| t.comments).unwrap_or_default()
    }

    /// Every uploaded file, attached or not, by id.
    pub fn uploads(&self) -> Vec<Attachment> {
        self.shared.lock().attachments.values().cloned().collect()
    }

    pub fn attachment(&self, id: u64) -> Option<Attachment> {
        self.shared.lock().attachments.get(&id).cloned()
    }

    /// Users of the account: the API agent and the requesters created by e-mail.
    pub fn users(&self) -> Vec<User> {
        self.shared.lock().users.clone()
    }

    /// Every webhook, in creation order, with the credentials it was configured with
    /// ([`Webhook::bearer_token`]) and its signing secret.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.shared.lock().webhooks.values().cloned().collect()
    }

    /// The signing secret of webhook `id`, as `GET /api/v2/webhooks/{id}/signing_secret` serves it.
    pub fn webhook_signing_secret(&self, id: &str) -> Option<String> {
        self.shared
            .lock()
            .webhooks
            .get(id)
            .map(|w| w.signing_secret.clone())
    }

    /// Every ticket field, system and custom, in id order.
    pub fn ticket_fields(&self) -> Vec<TicketField> {
        self.shared.lock().ticket_fields.values().cloned().collect()
    }

    /// Deletes a custom ticket field, as an admin would in Zendesk.
    pub fn delete_ticket_field(&self, id: u64) -> bool {
        self.shared.lock().delete_ticket_field(id).is_ok()
    }

    /// Every trigger category, in creation order.
    pub fn trigger_categories(&self) -> Vec<TriggerCategory> {
        self.shared
            .lock()
            .trigger_categories
            .values()
            .cloned()
            .collect()
    }

    /// Every trigger, in creation order.
    pub fn triggers(&self) -> Vec<Trigger> {
        self.shared.lock().triggers.values().cloned().collect()
    }

    pub fn trigger(&self, id: u64) -> Option<Trigger> {
        self.shared.lock().triggers.get(&id).cloned()
    }

    /// Edits trigger `id` directly, as an admin would in the Zendesk UI (e.g. push an extra
    /// condition onto `all` or an action onto `actions`), without the API's validation. Returns
    /// false when there is no such trigger.
    pub fn edit_trigger(&self, id: u64, edit: impl FnOnce(&mut Trigger)) -> bool {
        match self.shared.lock().triggers.get_mut(&id) {
            Some(trigger) => {
                edit(trigger);
                true
            }
            None => false,
        }
    }

    /// Every request received so far, in order (including those answered by a fault).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }
}

impl Drop for ZendeskSimulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl std::fmt::Debug for ZendeskSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskSimulator")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}
