//! The webhook Zendesk triggers call: who may call it ([`verify`]) and what a call asks for
//! ([`parse`]).
//!
//! [`verify`] runs on the raw request, before any JSON is read (Zendesk API reference §4.2):
//! the body size, then the bearer token the webhook was created with (§4.1), then
//! `X-Zendesk-Webhook-Signature` = base64(HMAC-SHA256(signing secret, timestamp header as
//! received + raw body)), compared in constant time, then the
//! `X-Zendesk-Webhook-Signature-Timestamp` window (5 minutes either way by default: replay
//! protection). [`parse`] then reads the verified body as one of the two requests the
//! connector's triggers send (§5.3), rejecting anything that could inject a mail header.
//!
//! Every refusal is a [`WebhookError`] whose [`status`](WebhookError::status) is a 4xx and whose
//! message names the problem without echoing a secret or the expected signature. Neither function
//! panics on any input (a property test throws arbitrary bytes and headers at both).

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{AccountId, PecAddress, TicketId};

/// The header carrying the base64 HMAC-SHA256 signature.
pub const SIGNATURE_HEADER: &str = "X-Zendesk-Webhook-Signature";
/// The header carrying the ISO 8601 time the signature was made (`2021-03-25T05:09:27Z`).
pub const TIMESTAMP_HEADER: &str = "X-Zendesk-Webhook-Signature-Timestamp";
/// The header naming one invocation of a webhook; retries of that invocation reuse it.
pub const INVOCATION_ID_HEADER: &str = "X-Zendesk-Webhook-Invocation-Id";
/// Where Zendesk puts the bearer token the webhook was created with.
pub const AUTHORIZATION_HEADER: &str = "Authorization";

/// Longest subject accepted, in characters (our limit: a PEC subject is a single header line).
pub const MAX_SUBJECT_CHARS: usize = 255;
/// Longest message accepted, in bytes (the default body limit: a message can be no longer).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most recipients one request may name (our limit, well under the providers').
pub const MAX_RECIPIENTS: usize = 50;

const MAX_INVOCATION_ID_LEN: usize = 64;
const MAX_TIMESTAMP_LEN: usize = 64;
const MAX_UPDATED_AT_LEN: usize = 64;

/// What a webhook call must prove: the signing secret Zendesk signs with (read from
/// `GET /api/v2/webhooks/{id}/signing_secret`) and the bearer token the webhook was created with.
#[derive(Debug)]
pub struct WebhookSecrets {
    pub signing_secret: SecretString,
    pub bearer_token: SecretString,
    /// The signing secret before a rotation, still accepted while Zendesk may sign with it.
    pub previous_signing_secret: Option<SecretString>,
}

impl WebhookSecrets {
    pub fn new(signing_secret: SecretString, bearer_token: SecretString) -> Self {
        Self {
            signing_secret,
            bearer_token,
            previous_signing_secret: None,
        }
    }
}

/// How much and how late a call may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookLimits {
    /// Largest body accepted (default 256 KiB).
    pub max_body_bytes: usize,
    /// Oldest signature timestamp accepted (default 5 minutes).
    pub max_age: TimeDelta,
    /// Furthest in the future a signature timestamp may be (clock skew; default 5 minutes).
    pub max_ahead: TimeDelta,
}

impl Default for WebhookLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 256 * 1024,
            max_age: TimeDelta::minutes(5),
            max_ahead: TimeDelta::minutes(5),
        }
    }
}

/// A call that proved it comes from Zendesk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWebhook {
    /// `X-Zendesk-Webhook-Invocation-Id`, when sent. Not covered by the signature: it is only as
    /// trustworthy as the bearer token.
    pub invocation_id: Option<String>,
    /// When Zendesk signed the call.
    pub timestamp: DateTime<Utc>,
}

/// Why a webhook call is refused. Messages are meant for the 4xx response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("body is {size} bytes; the limit is {limit}")]
    BodyTooLarge { size: usize, limit: usize },
    #[error("missing bearer token: expected an `Authorization: Bearer <token>` header")]
    MissingBearer,
    #[error("wrong bearer token")]
    WrongBearer,
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("{0} header appears more than once")]
    DuplicateHeader(&'static str),
    #[error("{header} header is not valid: {reason}")]
    BadHeader {
        header: &'static str,
        reason: &'static str,
    },
    #[error("signature does not match the body")]
    SignatureMismatch,
    #[error("timestamp is more than {} old", span(.max_secs))]
    StaleTimestamp { max_secs: i64 },
    #[error("timestamp is more than {} in the future", span(.max_secs))]
    FutureTimestamp { max_secs: i64 },
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    #[error("key {0:?} appears more than once: a placeholder value probably broke the JSON")]
    DuplicateKey(String),
    #[error("the body must be a JSON object")]
    NotAnObject,
    #[error("unknown event {0:?}: expected \"template_send\" (or no event) or \"public_reply\"")]
    UnknownEvent(String),
    #[error("field {field}: {reason}")]
    Field { field: &'static str, reason: String },
}

fn span(secs: &i64) -> String {
    match *secs {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

impl WebhookError {
    /// The HTTP status to answer with: 401 when the caller is not proven to be Zendesk, 413 for
    /// a body over the limit, 400 for a request that is not well-formed, 422 for a well-formed
    /// body whose content the connector cannot act on.
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::BodyTooLarge { .. } => 413,
            WebhookError::MissingBearer
            | WebhookError::WrongBearer
            | WebhookError::MissingHeader(_)
            | WebhookError::SignatureMismatch
            | WebhookError::StaleTimestamp { .. }
            | WebhookError::FutureTimestamp { .. } => 401,
            WebhookError::DuplicateHeader(_)
            | WebhookError::BadHeader { .. }
            | WebhookError::MalformedJson(_)
            | WebhookError::DuplicateKey(_)
            | WebhookError::NotAnObject => 400,
            WebhookError::UnknownEvent(_) | WebhookError::Field { .. } => 422,
        }
    }

    fn field(field: &'static str, reason: impl Into<String>) -> Self {
        WebhookError::Field {
            field,
            reason: reason.into(),
        }
    }
}

/// Checks that a call comes from Zendesk, before its body is parsed.
///
/// `headers` are name/value pairs as received (names matched case-insensitively); `body` is the
/// raw body, byte for byte. A security header sent twice is refused rather than guessed at.
pub fn verify<K: AsRef<str>, V: AsRef<str>>(
    headers: &[(K, V)],
    body: &[u8],
    secrets: &WebhookSecrets,
    now: DateTime<Utc>,
    limits: &WebhookLimits,
) -> Result<VerifiedWebhook, WebhookError> {
    if body.len() > limits.max_body_bytes {
        return Err(WebhookError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }

    check_bearer(
        header(headers, AUTHORIZATION_HEADER)?,
        &secrets.bearer_token,
    )?;

    let signature =
        header(headers, SIGNATURE_HEADER)?.ok_or(WebhookError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp_raw =
        header(headers, TIMESTAMP_HEADER)?.ok_or(WebhookError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| WebhookError::SignatureMismatch)?;
    let signed_by =
        |secret: &SecretString| signature_matches(secret, timestamp_raw, body, &signature);
    let matches = signed_by(&secrets.signing_secret)
        || secrets
            .previous_signing_secret
            .as_ref()
            .is_some_and(signed_by);
    if !matches {
        return Err(WebhookError::SignatureMismatch);
    }

    let timestamp = parse_timestamp(timestamp_raw)?;
    let age = now.signed_duration_since(timestamp);
    if age > limits.max_age {
        return Err(WebhookError::StaleTimestamp {
            max_secs: limits.max_age.num_seconds(),
        });
    }
    if -age > limits.max_ahead {
        return Err(WebhookError::FutureTimestamp {
            max_secs: limits.max_ahead.num_seconds(),
        });
    }

    let invocation_id = header(headers, INVOCATION_ID_HEADER)?
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| {
            let ok = id.len() <= MAX_INVOCATION_ID_LEN
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if ok {
                Ok(id.to_owned())
            } else {
                Err(WebhookError::BadHeader {
                    header: INVOCATION_ID_HEADER,
                    reason: "must be 1 to 64 characters of a-z, A-Z, 0-9, -, _ and .",
                })
            }
        })
        .transpose()?;

    Ok(VerifiedWebhook {
        invocation_id,
        timestamp,
    })
}

/// The value of the one header called `name`, if any.
fn header<'h, K: AsRef<str>, V: AsRef<str>>(
    headers: &'h [(K, V)],
    name: &'static str,
) -> Result<Option<&'h str>, WebhookError> {
    let mut found = None;
    for (k, v) in headers {
        if k.as_ref().trim().eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(WebhookError::DuplicateHeader(name));
            }
            found = Some(v.as_ref());
        }
    }
    Ok(found)
}

/// `Authorization: Bearer <token>`, compared in constant time. Both sides are hashed first so the
/// comparison does not even leak the token's length. An empty configured token accepts nothing.
fn check_bearer(authorization: Option<&str>, expected: &SecretString) -> Result<(), WebhookError> {
    let token = authorization
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(WebhookError::MissingBearer)?;
    let expected = expected.expose_secret();
    let same = Sha256::digest(token.as_bytes()).ct_eq(&Sha256::digest(expected.as_bytes()));
    if expected.is_empty() || !bool::from(same) {
        return Err(WebhookError::WrongBearer);
    }
    Ok(())
}

/// HMAC-SHA256(secret, timestamp as received + body) == signature, in constant time.
fn signature_matches(
    secret: &SecretString,
    timestamp: &str,
    body: &[u8],
    signature: &[u8],
) -> bool {
    let secret = secret.expose_secret();
    if secret.is_empty() {
        return false;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    mac.verify_slice(signature).is_ok()
}

/// The ISO 8601 / RFC 3339 time Zendesk sends (`2021-03-25T05:09:27Z`).
fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, WebhookError> {
    let raw = raw.trim();
    if raw.len() > MAX_TIMESTAMP_LEN {
        return Err(WebhookError::BadHeader {
            header: TIMESTAMP_HEADER,
            reason: "too long for a date and time",
        });
    }
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| WebhookError::BadHeader {
            header: TIMESTAMP_HEADER,
            reason: "expected an ISO 8601 date and time such as 2021-03-25T05:09:27Z",
        })
}

/// The keys of the body of "Reply by PEC Connector [address]" as the connector provisions it
/// (`to` is not one: an admin may add it to the trigger).
pub const TEMPLATE_KEYS: [&str; 7] = [
    "event",
    "account",
    "ticket_id",
    "requester",
    "subject",
    "message",
    "updated_at",
];

/// The keys of the body of the public-reply trigger as the connector provisions it.
pub const PUBLIC_REPLY_KEYS: [&str; 5] =
    ["event", "account", "ticket_id", "updated_at", "comment_id"];

/// What a verified call asks the connector to send.
///
/// Every placeholder value in a body is text a stranger may have written (a subject, a
/// comment), and Zendesk may insert it without JSON escaping (reference §6): a subject such as
/// `x","to":"other@pec.it` then adds keys to the body. So [`parse`] refuses a key that appears
/// twice, takes nothing that picks a recipient from the body but `to` (and only where the
/// trigger itself has it), and reports the keys the connector did not provision
/// ([`OutboundRequest::extra_keys`]) for the sender to check against the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboundRequest {
    /// The account's outbound template, from the "Reply by PEC Connector [address]" trigger
    /// (fired by the tag `pec_connector_reply_<address without @>`). Body:
    /// `{"account": "<id>", "ticket_id": "{{ticket.id}}", "requester":
    /// "{{ticket.requester.email}}", "subject": "...", "message": "...", "updated_at":
    /// "{{ticket.updated_at_with_timestamp}}"}`, optionally `"event": "template_send"`. Bodies
    /// without `event` are read as this kind, as the established product sends them. The
    /// recipient is the ticket's requester, read through the API (`requester` is not used).
    TemplateSend {
        account: AccountId,
        ticket: TicketId,
        /// `to`, when the body has it (a key an admin added to the trigger): addresses that
        /// replace the requester; comma- or semicolon-separated lists accepted, duplicates
        /// dropped, order kept. Empty: the ticket's requester.
        to: Vec<PecAddress>,
        /// Trimmed, one line, at most [`MAX_SUBJECT_CHARS`] characters.
        subject: String,
        /// The `message` as Zendesk rendered it. Placeholders in webhook bodies render as plain
        /// text (reference §6), so the sender may prefer the comment's HTML from the API.
        message_html: String,
        /// `{{ticket.updated_at_with_timestamp}}` as rendered: the update that fired the trigger
        /// (its comment, if any, is the one whose files go with the template).
        updated_at: Option<String>,
        /// Keys the connector did not provision, sorted.
        extra_keys: Vec<String>,
    },
    /// An agent's public reply on a PEC ticket (reference §5.3 (a)):
    /// `{"event": "public_reply", "ticket_id": "{{ticket.id}}", "updated_at":
    /// "{{ticket.updated_at_with_timestamp}}"}`, plus `account` and `comment_id` when the trigger
    /// names them. The comments themselves are read through the API.
    PublicReply {
        /// The account, when the trigger names it; otherwise the ticket's own record says.
        account: Option<AccountId>,
        ticket: TicketId,
        comment_id: Option<u64>,
        /// `{{ticket.updated_at_with_timestamp}}` as rendered: identifies the update that fired.
        updated_at: Option<String>,
        /// Keys the connector did not provision, sorted.
        extra_keys: Vec<String>,
    },
}

impl OutboundRequest {
    pub fn ticket(&self) -> TicketId {
        match self {
            OutboundRequest::TemplateSend { ticket, .. }
            | OutboundRequest::PublicReply { ticket, .. } => *ticket,
        }
    }

    pub fn account(&self) -> Option<&AccountId> {
        match self {
            OutboundRequest::TemplateSend { account, .. } => Some(account),
            OutboundRequest::PublicReply { account, .. } => account.as_ref(),
        }
    }

    /// The body's keys that the connector's own trigger body does not have: accepted only when
    /// the trigger in Zendesk has them too (an admin added them).
    pub fn extra_keys(&self) -> &[String] {
        match self {
            OutboundRequest::TemplateSend { extra_keys, .. }
            | OutboundRequest::PublicReply { extra_keys, .. } => extra_keys,
        }
    }

    /// The key under which "this was sent" is recorded, so that no delivery of the same event
    /// sends twice (Zendesk may deliver a webhook more than once, reference §4.3–4.4).
    ///
    /// * A public reply is one comment: keyed on ticket + `comment_id` when the body names it, so
    ///   any invocation carrying that comment (a retry, or a re-fired trigger, which gets a new
    ///   invocation id) sends it once. Without it, on ticket + `updated_at` (the ticket update
    ///   that fired the trigger: stable across duplicate deliveries), then on ticket + invocation
    ///   id, and last on ticket + signature timestamp. The sender should also record the id of
    ///   the comment it actually sends.
    /// * A template send is an act of the agent (adding the tag), which may be repeated on
    ///   purpose: keyed on account + ticket + invocation id, which retries of one invocation
    ///   share and a re-fire does not. Without an invocation id, on a SHA-256 of what would be
    ///   sent (recipients, subject, message): the same PEC to the same ticket only once.
    ///
    /// The invocation id header is not signed: within the 5-minute window, someone holding a
    /// captured request *and* the bearer token could replay it under a new id.
    pub fn dedup_key(&self, verified: &VerifiedWebhook) -> String {
        match self {
            OutboundRequest::PublicReply {
                ticket,
                comment_id,
                updated_at,
                ..
            } => match (comment_id, updated_at, &verified.invocation_id) {
                (Some(c), _, _) => format!("public_reply:{ticket}:comment:{c}"),
                (None, Some(u), _) => format!("public_reply:{ticket}:updated_at:{u}"),
                (None, None, Some(i)) => format!("public_reply:{ticket}:invocation:{i}"),
                (None, None, None) => format!(
                    "public_reply:{ticket}:timestamp:{}",
                    verified.timestamp.to_rfc3339()
                ),
            },
            OutboundRequest::TemplateSend {
                account,
                ticket,
                to,
                subject,
                message_html,
                ..
            } => match &verified.invocation_id {
                Some(i) => format!("template:{account}:{ticket}:invocation:{i}"),
                None => {
                    let mut h = Sha256::new();
                    for addr in to {
                        h.update(addr.as_str().as_bytes());
                        h.update(b"\n");
                    }
                    h.update(b"\0");
                    h.update(subject.as_bytes());
                    h.update(b"\0");
                    h.update(message_html.as_bytes());
                    let hex = pec::encode::hex(&h.finalize());
                    format!("template:{account}:{ticket}:sha256:{hex}")
                }
            },
        }
    }
}

/// Reads a verified body as one of the connector's two requests. Strict on the shape: one JSON
/// object, no key twice (at any depth); strict on the fields it uses: ids as numbers or numeric
/// strings (placeholders render as strings), addresses checked with [`PecAddress::parse`], no line
/// break in a subject or an address (a mail header could be injected through one). Keys it does
/// not provision are reported in [`OutboundRequest::extra_keys`], not refused here: the trigger
/// in Zendesk says whether an admin added them.
pub fn parse(body: &[u8]) -> Result<OutboundRequest, WebhookError> {
    let value: StrictValue = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix(DUPLICATE_PREFIX) {
            Some(rest) => WebhookError::DuplicateKey(
                rest.split(DUPLICATE_END).next().unwrap_or("").to_owned(),
            ),
            None => WebhookError::MalformedJson(text),
        }
    })?;
    let Value::Object(obj) = value.0 else {
        return Err(WebhookError::NotAnObject);
    };
    match opt_str(&obj, "event")?.map(str::trim) {
        None | Some("") | Some("template_send") => template_send(&obj),
        Some("public_reply") => public_reply(&obj),
        Some(other) => Err(WebhookError::UnknownEvent(other.chars().take(40).collect())),
    }
}

/// The ticket a body names, when it can be told even though the body is unusable (malformed, a
/// key twice): every `"ticket_id"` in it must give the same number, so that text injected into
/// the body cannot point the notice at another ticket.
pub fn ticket_hint(body: &[u8]) -> Option<TicketId> {
    let text = std::str::from_utf8(body).ok()?;
    let mut found: Option<u64> = None;
    let mut rest = text;
    while let Some(at) = rest.find("\"ticket_id\"") {
        rest = &rest[at + "\"ticket_id\"".len()..];
        let value = rest.trim_start().strip_prefix(':')?.trim_start();
        let value = value.strip_prefix('"').unwrap_or(value);
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.parse().ok()?;
        match found {
            Some(f) if f != n => return None,
            _ => found = Some(n),
        }
    }
    found.and_then(|n| TicketId::new(n).ok())
}

/// The keys of `obj` not in `known`, sorted.
fn extra_keys(obj: &Map<String, Value>, known: &[&str]) -> Vec<String> {
    let mut extra: Vec<String> = obj
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    extra.sort();
    extra
}

const DUPLICATE_PREFIX: &str = "duplicate key ";
const DUPLICATE_END: &str = "\u{0}";

/// A JSON value read with duplicate keys refused (serde_json keeps the last one silently).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                let shown: String = key.chars().filter(|c| *c != '\0').take(40).collect();
                return Err(serde::de::Error::custom(format!(
                    "{DUPLICATE_PREFIX}{shown}{DUPLICATE_END}"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

fn template_send(obj: &Map<String, Value>) -> Result<OutboundRequest, WebhookError> {
    let account = account(req_str(obj, "account")?)?;
    let ticket = ticket(obj)?;
    let to = match opt_str(obj, "to")?.filter(|s| !s.trim().is_empty()) {
        Some(list) => addresses("to", list)?,
        None => Vec::new(),
    };
    // `requester` is what the trigger says ({{ticket.requester.email}}): checked for header
    // injection, never used (the requester is read from the ticket).
    if let Some(r) = opt_str(obj, "requester")? {
        no_line_break("requester", r)?;
    }
    let subject = subject(req_str(obj, "subject")?)?;
    let message = req_str(obj, "message")?;
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(WebhookError::field(
            "message",
            format!(
                "is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                message.len()
            ),
        ));
    }
    Ok(OutboundRequest::TemplateSend {
        account,
        ticket,
        to,
        subject,
        message_html: message.to_owned(),
        updated_at: updated_at(obj)?,
        extra_keys: extra_keys(obj, &TEMPLATE_KEYS),
    })
}

fn public_reply(obj: &Map<String, Value>) -> Result<OutboundRequest, WebhookError> {
    let account = opt_str(obj, "account")?
        .filter(|s| !s.trim().is_empty())
        .map(account)
        .transpose()?;
    let ticket = ticket(obj)?;
    let comment_id = id(obj, "comment_id")?;
    if comment_id == Some(0) {
        return Err(WebhookError::field("comment_id", "must be greater than 0"));
    }
    Ok(OutboundRequest::PublicReply {
        account,
        ticket,
        comment_id,
        updated_at: updated_at(obj)?,
        extra_keys: extra_keys(obj, &PUBLIC_REPLY_KEYS),
    })
}

fn updated_at(obj: &Map<String, Value>) -> Result<Option<String>, WebhookError> {
    opt_str(obj, "updated_at")?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.len() > MAX_UPDATED_AT_LEN || s.chars().any(char::is_control) {
                Err(WebhookError::field(
                    "updated_at",
                    "must be a date and time of at most 64 characters on one line",
                ))
            } else {
                Ok(s.to_owned())
            }
        })
        .transpose()
}

/// A string field; absent and `null` are `None`.
fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, WebhookError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(WebhookError::field(field, "must be a string")),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, WebhookError> {
    opt_str(obj, field)?.ok_or_else(|| WebhookError::field(field, "is missing"))
}

/// A whole number given as a JSON number or a string of digits; absent, `null` and `""` are
/// `None`.
fn id(obj: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, WebhookError> {
    let bad = || WebhookError::field(field, "must be a positive whole number");
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn ticket(obj: &Map<String, Value>) -> Result<TicketId, WebhookError> {
    let n = id(obj, "ticket_id")?.ok_or_else(|| WebhookError::field("ticket_id", "is missing"))?;
    TicketId::new(n).map_err(|e| WebhookError::field("ticket_id", e.reason))
}

fn account(raw: &str) -> Result<AccountId, WebhookError> {
    AccountId::parse(raw.trim()).map_err(|e| WebhookError::field("account", e.reason))
}

fn no_line_break(field: &'static str, value: &str) -> Result<(), WebhookError> {
    if value.contains(['\r', '\n']) {
        return Err(WebhookError::field(field, "contains a line break"));
    }
    Ok(())
}

/// The subject: no line break (a header could be injected through one) nor other control
/// character but TAB; TABs become spaces and a subject over [`MAX_SUBJECT_CHARS`] is cut
/// (a long ticket title must not make every send of its ticket fail).
fn subject(raw: &str) -> Result<String, WebhookError> {
    no_line_break("subject", raw)?;
    if raw.chars().any(|c| c.is_control() && c != '\t') {
        return Err(WebhookError::field(
            "subject",
            "contains a control character",
        ));
    }
    let subject = crate::domain::one_line(raw, MAX_SUBJECT_CHARS);
    if subject.is_empty() {
        return Err(WebhookError::field("subject", "must not be empty"));
    }
    Ok(subject)
}

/// `a@pec.it, b@pec.it; c@pec.it`: each checked, duplicates dropped, order kept.
fn addresses(field: &'static str, raw: &str) -> Result<Vec<PecAddress>, WebhookError> {
    no_line_break(field, raw)?;
    let mut out: Vec<PecAddress> = Vec::new();
    for part in raw
        .split([',', ';'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let addr = PecAddress::parse(part).map_err(|e| {
            let shown: String = part.chars().take(80).collect();
            WebhookError::field(field, format!("{shown:?} is not an address: {}", e.reason))
        })?;
        if !out.contains(&addr) {
            out.push(addr);
        }
        if out.len() > MAX_RECIPIENTS {
            return Err(WebhookError::field(
                field,
                format!("names more than {MAX_RECIPIENTS} addresses"),
            ));
        }
    }
    if out.is_empty() {
        return Err(WebhookError::field(field, "must name at least one address"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "test-signing-secret";
    const TOKEN: &str = "test-bearer-token";
    const TS: &str = "2021-03-25T05:09:27Z";
    const BODY: &[u8] = br#"{"event":"public_reply","ticket_id":"42"}"#;
    /// python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(b"test-signing-secret",
    ///   b"2021-03-25T05:09:27Z" + b"{\"event\":\"public_reply\",\"ticket_id\":\"42\"}",
    ///   hashlib.sha256).digest()).decode())'
    const SIG: &str = "/1ZDBQ2/gurUUay4U7tBMYMz8WXjk5PzlRI3Rb0niEk=";

    fn secrets() -> WebhookSecrets {
        WebhookSecrets::new(SecretString::from(SECRET), SecretString::from(TOKEN))
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2021-03-25T05:10:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(ts.as_bytes());
        mac.update(body);
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    fn headers(sig: &str, ts: &str) -> Vec<(String, String)> {
        vec![
            ("authorization".into(), format!("Bearer {TOKEN}")),
            ("x-zendesk-webhook-signature".into(), sig.into()),
            ("x-zendesk-webhook-signature-timestamp".into(), ts.into()),
            (
                "x-zendesk-webhook-invocation-id".into(),
                "8350205582".into(),
            ),
            ("x-zendesk-account-id".into(), "123456".into()),
        ]
    }

    fn without(mut h: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
        h.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        h
    }

    fn check(h: &[(String, String)], body: &[u8]) -> Result<VerifiedWebhook, WebhookError> {
        verify(h, body, &secrets(), now(), &WebhookLimits::default())
    }

    #[test]
    fn known_answer_signature_is_accepted() {
        assert_eq!(sign(SECRET, TS, BODY), SIG);
        let v = check(&headers(SIG, TS), BODY).unwrap();
        assert_eq!(v.invocation_id.as_deref(), Some("8350205582"));
        assert_eq!(v.timestamp.to_rfc3339(), "2021-03-25T05:09:27+00:00");
    }

    #[test]
    fn header_names_are_case_insensitive_and_invocation_id_optional() {
        let h: Vec<(&str, String)> = vec![
            ("AUTHORIZATION", format!("bearer {TOKEN}")),
            (SIGNATURE_HEADER, SIG.to_owned()),
            (TIMESTAMP_HEADER, TS.to_owned()),
        ];
        let v = verify(&h, BODY, &secrets(), now(), &WebhookLimits::default()).unwrap();
        assert_eq!(v.invocation_id, None);
    }

    #[test]
    fn tampered_body_is_refused() {
        let body = br#"{"event":"public_reply","ticket_id":"43"}"#;
        let err = check(&headers(SIG, TS), body).unwrap_err();
        assert_eq!(err, WebhookError::SignatureMismatch);
        assert_eq!(err.status(), 401);
        assert_eq!(err.to_string(), "signature does not match the body");
    }

    #[test]
    fn wrong_secret_and_garbage_signatures_are_refused() {
        let other = sign("another-secret", TS, BODY);
        for sig in [other.as_str(), "not base64!", "", "AAAA"] {
            let err = check(&headers(sig, TS), BODY).unwrap_err();
            assert_eq!(err, WebhookError::SignatureMismatch, "{sig:?}");
        }
        // The signature covers the timestamp as received: another spelling of the same instant
        // does not match.
        let err = check(&headers(SIG, "2021-03-25T05:09:27+00:00"), BODY).unwrap_err();
        assert_eq!(err, WebhookError::SignatureMismatch);
    }

    #[test]
    fn previous_secret_is_accepted_during_rotation() {
        let mut s =
            WebhookSecrets::new(SecretString::from("new-secret"), SecretString::from(TOKEN));
        let h = headers(SIG, TS);
        let limits = WebhookLimits::default();
        assert!(verify(&h, BODY, &s, now(), &limits).is_err());
        s.previous_signing_secret = Some(SecretString::from(SECRET));
        assert!(verify(&h, BODY, &s, now(), &limits).is_ok());
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let limits = WebhookLimits::default();
        let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
        let h = headers(SIG, TS);
        // Exactly 5 minutes old is still fine; one second more is not.
        assert!(verify(&h, BODY, &secrets(), at("2021-03-25T05:14:27Z"), &limits).is_ok());
        let err = verify(&h, BODY, &secrets(), at("2021-03-25T05:14:28Z"), &limits).unwrap_err();
        assert_eq!(err.to_string(), "timestamp is more than 5 minutes old");
        assert_eq!(err.status(), 401);
        let err = verify(&h, BODY, &secrets(), at("2021-03-25T05:04:26Z"), &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "timestamp is more than 5 minutes in the future"
        );
        assert_eq!(err.status(), 401);
    }

    #[test]
    fn unparseable_timestamp_is_refused_even_when_signed() {
        let ts = "yesterday";
        let err = check(&headers(&sign(SECRET, ts, BODY), ts), BODY).unwrap_err();
        assert!(
            matches!(err, WebhookError::BadHeader { header, .. } if header == TIMESTAMP_HEADER)
        );
        assert!(err.status() >= 400 && err.status() < 500);
    }

    #[test]
    fn missing_and_repeated_headers_are_refused() {
        let err = check(&without(headers(SIG, TS), SIGNATURE_HEADER), BODY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing X-Zendesk-Webhook-Signature header"
        );
        assert_eq!(err.status(), 401);
        let err = check(&without(headers(SIG, TS), TIMESTAMP_HEADER), BODY).unwrap_err();
        assert_eq!(err, WebhookError::MissingHeader(TIMESTAMP_HEADER));
        let mut h = headers(SIG, TS);
        h.push((SIGNATURE_HEADER.into(), sign("x", TS, BODY)));
        let err = check(&h, BODY).unwrap_err();
        assert_eq!(err, WebhookError::DuplicateHeader(SIGNATURE_HEADER));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn bearer_token_is_required() {
        let err = check(&without(headers(SIG, TS), "authorization"), BODY).unwrap_err();
        assert_eq!(err, WebhookError::MissingBearer);
        assert_eq!(err.status(), 401);
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", TOKEN] {
            let mut h = without(headers(SIG, TS), "authorization");
            h.push(("Authorization".into(), value.into()));
            assert_eq!(
                check(&h, BODY).unwrap_err(),
                WebhookError::MissingBearer,
                "{value:?}"
            );
        }
        for value in [
            "Bearer wrong",
            "Bearer test-bearer-toke",
            "Bearer test-bearer-tokenX",
        ] {
            let mut h = without(headers(SIG, TS), "authorization");
            h.push(("Authorization".into(), value.into()));
            let err = check(&h, BODY).unwrap_err();
            assert_eq!(err, WebhookError::WrongBearer, "{value:?}");
            assert!(!err.to_string().contains(TOKEN));
        }
    }

    #[test]
    fn empty_configured_secrets_accept_nothing() {
        let s = WebhookSecrets::new(SecretString::from(""), SecretString::from(""));
        let mut h = without(headers(&sign("", TS, BODY), TS), "authorization");
        h.push(("Authorization".into(), "Bearer x".into()));
        let err = verify(&h, BODY, &s, now(), &WebhookLimits::default()).unwrap_err();
        assert_eq!(err, WebhookError::WrongBearer);
        let s = WebhookSecrets::new(SecretString::from(""), SecretString::from(TOKEN));
        let h = headers(&sign("", TS, BODY), TS);
        let err = verify(&h, BODY, &s, now(), &WebhookLimits::default()).unwrap_err();
        assert_eq!(err, WebhookError::SignatureMismatch);
    }

    #[test]
    fn oversized_body_is_refused_before_anything_else() {
        let limits = WebhookLimits::default();
        let body = vec![b' '; limits.max_body_bytes + 1];
        let err = verify::<&str, &str>(&[], &body, &secrets(), now(), &limits).unwrap_err();
        assert_eq!(err.status(), 413);
        assert_eq!(err.to_string(), "body is 262145 bytes; the limit is 262144");
    }

    #[test]
    fn bad_invocation_id_is_refused() {
        let mut h = without(headers(SIG, TS), INVOCATION_ID_HEADER);
        h.push((INVOCATION_ID_HEADER.into(), "a b\u{7f}".into()));
        assert_eq!(check(&h, BODY).unwrap_err().status(), 400);
    }

    #[test]
    fn messages_never_hold_secrets_or_the_expected_signature() {
        let wrong = sign("x", TS, BODY);
        let err = check(&headers(&wrong, TS), BODY).unwrap_err();
        let text = format!("{err} {err:?} {:?}", secrets());
        for secret in [SECRET, TOKEN, SIG] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    fn template_body(extra: &str) -> String {
        format!(
            r#"{{"account":"aruba-1","ticket_id":"42","requester":"Mario.Rossi@PEC.example.it",
                "subject":"Risposta alla vostra PEC","message":"<p>Buongiorno</p>"{extra}}}"#
        )
    }

    /// The template body with `field` set to the JSON text `value` (replaced, not repeated).
    fn template_with(field: &str, value: &str) -> String {
        let mut body: Value = serde_json::from_str(&template_body("")).unwrap();
        body[field] = serde_json::from_str(value).unwrap();
        body.to_string()
    }

    #[test]
    fn template_send_is_parsed() {
        let req = parse(template_body(r#","unknown":[1,2,{"x":null}]"#).as_bytes()).unwrap();
        let OutboundRequest::TemplateSend {
            account,
            ticket,
            to,
            subject,
            message_html,
            updated_at,
            extra_keys,
        } = &req
        else {
            panic!("{req:?}")
        };
        assert_eq!(account.as_str(), "aruba-1");
        assert_eq!(ticket.get(), 42);
        assert!(to.is_empty(), "the requester comes from the ticket: {to:?}");
        assert_eq!(subject, "Risposta alla vostra PEC");
        assert_eq!(message_html, "<p>Buongiorno</p>");
        assert_eq!(updated_at, &None);
        assert_eq!(extra_keys, &["unknown"]);
        assert_eq!(req.account().map(AccountId::as_str), Some("aruba-1"));
        // The explicit event name means the same; `updated_at` is kept.
        let same = parse(
            template_body(
                r#","event":"template_send","unknown":0,"updated_at":"2026-12-03T10:00:00Z""#,
            )
            .as_bytes(),
        )
        .unwrap();
        let OutboundRequest::TemplateSend { updated_at, .. } = &same else {
            panic!()
        };
        assert_eq!(updated_at.as_deref(), Some("2026-12-03T10:00:00Z"));
        assert_eq!(same.extra_keys(), ["unknown"]);
    }

    #[test]
    fn template_send_to_is_an_extra_key_and_takes_lists() {
        let body = template_body(r#","to":" a@pec.it; B@pec.it , a@pec.it,, ""#);
        let req = parse(body.as_bytes()).unwrap();
        assert_eq!(req.extra_keys(), ["to"]);
        let OutboundRequest::TemplateSend { to, .. } = req else {
            panic!()
        };
        let to: Vec<&str> = to.iter().map(PecAddress::as_str).collect();
        assert_eq!(to, ["a@pec.it", "b@pec.it"]);
        let many: Vec<String> = (0..=MAX_RECIPIENTS)
            .map(|i| format!("u{i}@pec.it"))
            .collect();
        let body = template_body(&format!(r#","to":"{}""#, many.join(",")));
        let err = parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.to_string(), "field to: names more than 50 addresses");
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        // What `{{ticket.title}}` rendered verbatim into "subject" does with a crafted subject.
        let injected = r#"{"account":"aruba-1","ticket_id":"42","requester":"m@pec.it","subject":"Richiesta","to":"terzo@pec.example.org","message":"<p>testo falso</p>","message":"<p>vero</p>"}"#;
        let err = parse(injected.as_bytes()).unwrap_err();
        assert_eq!(err, WebhookError::DuplicateKey("message".into()));
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("placeholder"), "{err}");
        let nested = br#"{"account":"a","ticket_id":1,"x":{"k":1,"k":2}}"#;
        assert_eq!(
            parse(nested).unwrap_err(),
            WebhookError::DuplicateKey("k".into())
        );
        // The same subject JSON-escaped is one harmless string.
        let escaped = template_with("subject", r#""Richiesta\",\"to\":\"terzo@pec.example.org""#);
        let req = parse(escaped.as_bytes()).unwrap();
        assert!(req.extra_keys().is_empty());
        let OutboundRequest::TemplateSend { to, subject, .. } = req else {
            panic!()
        };
        assert!(to.is_empty());
        assert_eq!(subject, r#"Richiesta","to":"terzo@pec.example.org"#);
    }

    #[test]
    fn the_ticket_of_an_unusable_body_is_told_only_when_unambiguous() {
        let hint = |b: &str| ticket_hint(b.as_bytes()).map(TicketId::get);
        assert_eq!(hint(r#"{"ticket_id":"42","subject":"a"b"}"#), Some(42));
        assert_eq!(
            hint(r#"{"ticket_id": 42, "x": "y", "ticket_id":"42"}"#),
            Some(42)
        );
        assert_eq!(
            hint(r#"{"ticket_id":"42","subject":"x","ticket_id":"7"}"#),
            None
        );
        assert_eq!(hint(r#"{"subject":"x"}"#), None);
        assert_eq!(hint(r#"{"ticket_id":"{{ticket.id}}"}"#), None);
        assert_eq!(hint("\u{ff}\u{fe}"), None);
    }

    #[test]
    fn numeric_ids_may_be_numbers_or_strings() {
        for id in ["42", "\"42\"", "\" 42 \""] {
            let body = format!(r#"{{"event":"public_reply","ticket_id":{id},"comment_id":"7"}}"#);
            let req = parse(body.as_bytes()).unwrap();
            assert_eq!(req.ticket().get(), 42, "{id}");
        }
        for bad in [
            "0",
            "-1",
            "4.2",
            "\"{{ticket.id}}\"",
            "\"\"",
            "true",
            "[42]",
            "1e3",
        ] {
            let body = format!(r#"{{"event":"public_reply","ticket_id":{bad}}}"#);
            let err = parse(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 422, "{bad}");
            assert!(err.to_string().starts_with("field ticket_id: "), "{err}");
        }
    }

    #[test]
    fn public_reply_is_parsed() {
        let body =
            br#"{"event":"public_reply","ticket_id":"42","updated_at":"March 25, 2021 05:09"}"#;
        assert_eq!(
            parse(body).unwrap(),
            OutboundRequest::PublicReply {
                account: None,
                ticket: TicketId::new(42).unwrap(),
                comment_id: None,
                updated_at: Some("March 25, 2021 05:09".into()),
                extra_keys: Vec::new(),
            }
        );
        let body = br#"{"event":"public_reply","account":"aruba-1","ticket_id":42,"comment_id":9007,"updated_at":""}"#;
        let req = parse(body).unwrap();
        assert_eq!(req.account().map(AccountId::as_str), Some("aruba-1"));
        let OutboundRequest::PublicReply {
            comment_id,
            updated_at,
            ..
        } = req
        else {
            panic!()
        };
        assert_eq!((comment_id, updated_at), (Some(9007), None));
        let err = parse(br#"{"event":"public_reply","ticket_id":1,"comment_id":0}"#).unwrap_err();
        assert_eq!(err.to_string(), "field comment_id: must be greater than 0");
    }

    #[test]
    fn header_injection_is_refused() {
        let cases = [
            (
                "subject",
                r#""Ciao\r\nBcc: victim@pec.it""#,
                "field subject: contains a line break",
            ),
            (
                "subject",
                r#""Ciao\nBcc: x@pec.it""#,
                "field subject: contains a line break",
            ),
            (
                "to",
                r#""a@pec.it\r\nBcc: x@pec.it""#,
                "field to: contains a line break",
            ),
            (
                "requester",
                r#""a@pec.it\n""#,
                "field requester: contains a line break",
            ),
            (
                "subject",
                r#""Ciao\u0000""#,
                "field subject: contains a control character",
            ),
        ];
        for (field, value, message) in cases {
            let err = parse(template_with(field, value).as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), message, "{field}: {value}");
            assert_eq!(err.status(), 422);
        }
    }

    #[test]
    fn payload_problems_are_named() {
        let cases: [(&[u8], &str); 8] = [
            (b"{", "malformed JSON: "),
            (b"[1]", "the body must be a JSON object"),
            (br#"{"event":"new_outbound","ticket_id":"1"}"#, "unknown event \"new_outbound\""),
            (br#"{"event":5}"#, "field event: must be a string"),
            (br#"{"ticket_id":"1"}"#, "field account: is missing"),
            (br#"{"account":"Aruba!","ticket_id":"1"}"#, "field account: "),
            (br#"{"account":"a","ticket_id":"1","requester":"a@pec.it","subject":"  ","message":"m"}"#, "field subject: must not be empty"),
            (br#"{"account":"a","ticket_id":"1","requester":"a@pec.it","subject":"s"}"#, "field message: is missing"),
        ];
        for (body, prefix) in cases {
            let err = parse(body).unwrap_err();
            assert!(err.to_string().starts_with(prefix), "{err} / {prefix}");
            assert!(matches!(err.status(), 400 | 422));
        }
        // A long subject or a TAB is cleaned, not refused.
        let long = "x".repeat(MAX_SUBJECT_CHARS + 40);
        let OutboundRequest::TemplateSend { subject, .. } =
            parse(template_with("subject", &format!(r#""{long}\tfine""#)).as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(subject.chars().count(), MAX_SUBJECT_CHARS);
        assert!(subject.ends_with('…'));
    }

    #[test]
    fn dedup_keys() {
        let verified = |inv: Option<&str>| VerifiedWebhook {
            invocation_id: inv.map(str::to_owned),
            timestamp: now(),
        };
        let reply = |body: &[u8]| parse(body).unwrap();
        let with_comment = reply(
            br#"{"event":"public_reply","ticket_id":"42","comment_id":"7","updated_at":"u"}"#,
        );
        // One comment, one send, whatever the invocation.
        assert_eq!(
            with_comment.dedup_key(&verified(Some("1"))),
            "public_reply:42:comment:7"
        );
        assert_eq!(
            with_comment.dedup_key(&verified(Some("2"))),
            with_comment.dedup_key(&verified(None))
        );
        let with_update =
            reply(br#"{"event":"public_reply","ticket_id":"42","updated_at":"2021-03-25 05:09"}"#);
        assert_eq!(
            with_update.dedup_key(&verified(Some("1"))),
            "public_reply:42:updated_at:2021-03-25 05:09"
        );
        let bare = reply(br#"{"event":"public_reply","ticket_id":"42"}"#);
        assert_eq!(
            bare.dedup_key(&verified(Some("9"))),
            "public_reply:42:invocation:9"
        );
        assert!(
            bare.dedup_key(&verified(None))
                .starts_with("public_reply:42:timestamp:2021-03-25T05:10:00")
        );

        let send = parse(template_body("").as_bytes()).unwrap();
        assert_eq!(
            send.dedup_key(&verified(Some("9"))),
            "template:aruba-1:42:invocation:9"
        );
        assert_ne!(
            send.dedup_key(&verified(Some("9"))),
            send.dedup_key(&verified(Some("10")))
        );
        let by_content = send.dedup_key(&verified(None));
        assert!(by_content.starts_with("template:aruba-1:42:sha256:"));
        assert_eq!(by_content.len(), "template:aruba-1:42:sha256:".len() + 64);
        let other = parse(template_with("subject", r#""Altro""#).as_bytes()).unwrap();
        assert_ne!(other.dedup_key(&verified(None)), by_content);
    }

    fn arb_headers() -> impl Strategy<Value = Vec<(String, String)>> {
        let name = prop_oneof![
            Just(AUTHORIZATION_HEADER.to_owned()),
            Just(SIGNATURE_HEADER.to_lowercase()),
            Just(TIMESTAMP_HEADER.to_owned()),
            Just(INVOCATION_ID_HEADER.to_owned()),
            "\\PC{0,20}",
        ];
        let value = prop_oneof![
            Just(format!("Bearer {TOKEN}")),
            Just(SIG.to_owned()),
            Just(TS.to_owned()),
            "[A-Za-z0-9+/=]{0,50}",
            "\\PC{0,40}",
            ".{0,40}",
        ];
        proptest::collection::vec((name, value), 0..8)
    }

    fn arb_body() -> impl Strategy<Value = Vec<u8>> {
        let json_value = prop_oneof![
            Just("null".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "\\PC{0,30}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ".{0,30}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            Just("\"a@pec.it, b@pec.it\"".to_owned()),
            Just("\"42\"".to_owned()),
            Just("\"public_reply\"".to_owned()),
            Just("\"aruba-1\"".to_owned()),
            Just("[]".to_owned()),
        ];
        let key = prop_oneof![
            Just("event"),
            Just("account"),
            Just("ticket_id"),
            Just("comment_id"),
            Just("requester"),
            Just("to"),
            Just("subject"),
            Just("message"),
            Just("updated_at"),
            Just("other"),
        ];
        let object = proptest::collection::vec((key, json_value), 0..10).prop_map(|fields| {
            let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", inner.join(",")).into_bytes()
        });
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..300), object]
    }

    proptest! {
        #[test]
        fn template_fields_never_carry_a_line_break(
            subject in "\\PC{0,20}(\r|\n|\u{85}|\t)?\\PC{0,20}",
            to in "[a-z.@,; ]{0,20}(\r|\n)?[a-z.@,; ]{0,20}",
        ) {
            let body = serde_json::json!({
                "account": "a1", "ticket_id": 1, "to": to, "requester": "r@pec.it",
                "subject": subject, "message": "m",
            });
            match parse(body.to_string().as_bytes()) {
                Ok(OutboundRequest::TemplateSend { subject, to, .. }) => {
                    prop_assert!(!subject.chars().any(|c| c.is_control() && c != '\t'));
                    prop_assert!(to.len() <= MAX_RECIPIENTS);
                }
                Ok(other) => prop_assert!(false, "{other:?}"),
                Err(e) => prop_assert_eq!(e.status(), 422, "{}", e),
            }
        }

        #[test]
        fn verify_and_parse_never_panic_and_refuse_with_4xx(
            headers in arb_headers(),
            body in arb_body(),
            sign_it in any::<bool>(),
            skew in -600i64..600,
        ) {
            let mut headers = headers;
            if sign_it {
                let ts = (now() + TimeDelta::seconds(skew)).to_rfc3339();
                headers.retain(|(k, _)| {
                    ![SIGNATURE_HEADER, TIMESTAMP_HEADER, AUTHORIZATION_HEADER]
                        .iter()
                        .any(|h| k.trim().eq_ignore_ascii_case(h))
                });
                headers.push((AUTHORIZATION_HEADER.into(), format!("Bearer {TOKEN}")));
                headers.push((SIGNATURE_HEADER.into(), sign(SECRET, &ts, &body)));
                headers.push((TIMESTAMP_HEADER.into(), ts));
            }
            let verified = verify(&headers, &body, &secrets(), now(), &WebhookLimits::default());
            if let Err(e) = &verified {
                prop_assert!((400..500).contains(&e.status()), "{e}");
            }
            match parse(&body) {
                Ok(req) => {
                    if let Ok(v) = &verified {
                        prop_assert!(!req.dedup_key(v).is_empty());
                    }
                    if let OutboundRequest::TemplateSend { subject, to, .. } = &req {
                        prop_assert!(!subject.contains(['\r', '\n']));
                        prop_assert!(to.iter().all(|a| !a.as_str().contains(['\r', '\n'])));
                    }
                }
                Err(e) => prop_assert!((400..500).contains(&e.status()), "{e}"),
            }
        }
    }
}
