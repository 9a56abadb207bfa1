//! The values the connector talks about: validated newtypes ("parse, don't validate") and the
//! records the [`Store`](crate::ports::Store) keeps.
//!
//! Every constructor that takes outside input is a `parse` returning [`InvalidInput`], which names
//! the field and says what is wrong with it. Nothing here does I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod tags;

/// A value from outside that does not fit its type: names the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidInput {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

macro_rules! string_newtype_serde {
    ($t:ident) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $t::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
        impl FromStr for $t {
            type Err = InvalidInput;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $t::parse(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// The id an admin gives a PEC account: 1 to 40 characters of `a-z`, `0-9` and `-`, starting and
/// ending with a letter or digit. It is used inside DynamoDB keys, Secrets Manager names,
/// EventBridge rule names (at most 64 characters with our prefix) and Zendesk tags, so it is kept
/// to characters all of them accept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(String);

impl AccountId {
    pub const MAX_LEN: usize = 40;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        const FIELD: &str = "account id";
        if raw.is_empty() {
            return Err(InvalidInput::new(FIELD, "must not be empty"));
        }
        if raw.len() > Self::MAX_LEN {
            return Err(InvalidInput::new(
                FIELD,
                format!("must be at most {} characters", Self::MAX_LEN),
            ));
        }
        if let Some(c) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(InvalidInput::new(
                FIELD,
                format!("{c:?} is not allowed (use a-z, 0-9 and -)"),
            ));
        }
        if raw.starts_with('-') || raw.ends_with('-') {
            return Err(InvalidInput::new(
                FIELD,
                "must start and end with a letter or digit",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(AccountId);

/// The id of a registered Zendesk instance (a deployment may serve several). Same alphabet as
/// [`AccountId`], at most 30 characters (it names secrets and the webhook path).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceId(String);

impl InstanceId {
    pub const MAX_LEN: usize = 30;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !raw.starts_with('-')
            && !raw.ends_with('-');
        if !ok {
            return Err(InvalidInput::new(
                "zendesk instance id",
                "must be 1 to 30 characters of a-z, 0-9 and -, starting and ending with a letter or digit",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(InstanceId);

/// How the connector authenticates to a Zendesk instance; the token itself is a secret
/// ([`SecretName::ZendeskToken`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ZendeskAuthKind {
    /// An API token of the agent `email`.
    ApiToken { email: String },
    /// An OAuth access token.
    OAuth,
}

/// A Zendesk instance registered with the deployment, besides the default one its settings name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZendeskInstance {
    pub id: InstanceId,
    /// `https://<subdomain>.zendesk.com` (or another base URL, e.g. a simulator in tests).
    pub url: String,
    pub auth: ZendeskAuthKind,
    pub created_at: DateTime<Utc>,
}

/// A PEC mailbox address, lower-cased: `local@domain` with a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PecAddress(String);

impl PecAddress {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        const FIELD: &str = "address";
        let addr = raw.trim().to_ascii_lowercase();
        if addr.is_empty() {
            return Err(InvalidInput::new(FIELD, "must not be empty"));
        }
        if addr.len() > 254 {
            return Err(InvalidInput::new(FIELD, "must be at most 254 characters"));
        }
        let Some((local, domain)) = addr.split_once('@') else {
            return Err(InvalidInput::new(FIELD, "must contain @"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(InvalidInput::new(
                FIELD,
                "the part before @ must be 1 to 64 characters",
            ));
        }
        let local_ok = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c);
        if !local.chars().all(local_ok)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(InvalidInput::new(
                FIELD,
                "the part before @ has a character or dot that is not allowed",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 {
            return Err(InvalidInput::new(
                FIELD,
                "the domain must have at least two labels (e.g. pec.it)",
            ));
        }
        for label in labels {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(InvalidInput::new(
                    FIELD,
                    format!("domain label {label:?} is not valid"),
                ));
            }
        }
        Ok(Self(addr))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(PecAddress);

/// An RFC 5322 Message-ID without its angle brackets, e.g. `abc.123@pec.example.it`. Used both for
/// the Message-IDs we generate and for the provider's *identificativo* (which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Longest accepted, so that keys built from it stay under DynamoDB's 1024-byte sort key limit.
    pub const MAX_LEN: usize = 900;

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        const FIELD: &str = "message id";
        let t = raw.trim();
        let t = t.strip_prefix('<').unwrap_or(t);
        let t = t.strip_suffix('>').unwrap_or(t);
        if t.is_empty() {
            return Err(InvalidInput::new(FIELD, "must not be empty"));
        }
        if t.len() > Self::MAX_LEN {
            return Err(InvalidInput::new(
                FIELD,
                format!("must be at most {} bytes", Self::MAX_LEN),
            ));
        }
        if t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(InvalidInput::new(
                FIELD,
                "must not contain spaces, control characters or angle brackets",
            ));
        }
        Ok(Self(t.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(MessageId);

macro_rules! nonzero_u32 {
    ($(#[$doc:meta])* $t:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u32", into = "u32")]
        pub struct $t(u32);

        impl $t {
            pub fn new(n: u32) -> Result<Self, InvalidInput> {
                if n == 0 {
                    Err(InvalidInput::new($field, "must be greater than 0"))
                } else {
                    Ok(Self(n))
                }
            }
            pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
                let n = raw
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| InvalidInput::new($field, "must be a number from 1 to 4294967295"))?;
                Self::new(n)
            }
            pub fn get(self) -> u32 {
                self.0
            }
        }
        impl TryFrom<u32> for $t {
            type Error = InvalidInput;
            fn try_from(n: u32) -> Result<Self, InvalidInput> {
                Self::new(n)
            }
        }
        impl From<$t> for u32 {
            fn from(v: $t) -> u32 {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

nonzero_u32!(
    /// An IMAP message UID (RFC 3501: a non-zero 32-bit number, ascending within a UIDVALIDITY).
    Uid,
    "uid"
);
nonzero_u32!(
    /// An IMAP mailbox UIDVALIDITY: when it changes, every UID seen before means nothing.
    UidValidity,
    "uidvalidity"
);

/// `text` on one line of at most `max_chars` characters: control characters (a TAB, a line
/// break) become spaces, runs of spaces one, and a longer text is cut at a character with `…`.
/// What a subject taken from a ticket or a trigger becomes before it is a mail header, so that a
/// long or odd title never makes every send of its ticket fail.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    let mut space = false;
    for c in text.trim().chars() {
        if c.is_control() || c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars.saturating_sub(1)).collect();
        out.push('…');
    }
    out
}

/// What identifies the message a ticket, comment or note came from, written into it (a
/// ticket's `external_id`, a comment's reference line): `pec:<account>:<nonce>:<uidvalidity>:<uid>`,
/// or `pec:<account>:<uidvalidity>:<uid>` for accounts registered before the registration nonce.
/// The nonce makes a marker unique to one registration of an account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TicketMarker {
    pub account: AccountId,
    pub nonce: Option<String>,
    pub uid_validity: UidValidity,
    pub uid: Uid,
}

impl TicketMarker {
    /// The marker of message `uid` under `uid_validity` of `account`'s current registration.
    pub fn of(account: &Account, uid_validity: UidValidity, uid: Uid) -> Self {
        TicketMarker {
            account: account.id.clone(),
            nonce: account.nonce.clone(),
            uid_validity,
            uid,
        }
    }

    /// Reads a marker; `None` for anything else (another integration's external id).
    pub fn parse(raw: &str) -> Option<Self> {
        let parts: Vec<&str> = raw.strip_prefix("pec:")?.split(':').collect();
        let (account, nonce, uv, uid) = match parts.as_slice() {
            [a, uv, uid] => (a, None, uv, uid),
            [a, n, uv, uid] => {
                let ok = !n.is_empty()
                    && n.len() <= 32
                    && n.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
                if !ok {
                    return None;
                }
                (a, Some((*n).to_owned()), uv, uid)
            }
            _ => return None,
        };
        Some(TicketMarker {
            account: AccountId::parse(account).ok()?,
            nonce,
            uid_validity: UidValidity::parse(uv).ok()?,
            uid: Uid::parse(uid).ok()?,
        })
    }

    /// Whether the marker was made by `account`'s current registration.
    pub fn is_of(&self, account: &Account) -> bool {
        self.account == account.id && self.nonce == account.nonce
    }
}

impl fmt::Display for TicketMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pec:{}:", self.account)?;
        if let Some(n) = &self.nonce {
            write!(f, "{n}:")?;
        }
        write!(f, "{}:{}", self.uid_validity.get(), self.uid.get())
    }
}

/// The `external_id` of the alert ticket of `account`'s incident that began at `since` (one
/// alert per incident, found again by it).
pub fn alert_external_id(account: &AccountId, since: DateTime<Utc>) -> String {
    format!("pec-alert:{}:{}", account.as_str(), since.timestamp())
}

/// The `external_id` of the alert ticket that lists the messages of `account`'s mailbox skipped
/// when it was renumbered to `uid_validity`.
pub fn renumbered_external_id(account: &AccountId, uid_validity: UidValidity) -> String {
    format!("pec-renumbered:{}:{}", account.as_str(), uid_validity.get())
}

/// The `external_id` of the alert about the parked message whose ticket is marked `marker`.
pub fn parked_external_id(marker: &str) -> String {
    format!("pec-parked:{marker}")
}

/// A Zendesk ticket id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct TicketId(u64);

impl TicketId {
    pub fn new(n: u64) -> Result<Self, InvalidInput> {
        if n == 0 {
            Err(InvalidInput::new("ticket id", "must be greater than 0"))
        } else {
            Ok(Self(n))
        }
    }
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let n = raw
            .trim()
            .parse::<u64>()
            .map_err(|_| InvalidInput::new("ticket id", "must be a positive number"))?;
        Self::new(n)
    }
    pub fn get(self) -> u64 {
        self.0
    }
}
impl TryFrom<u64> for TicketId {
    type Error = InvalidInput;
    fn try_from(n: u64) -> Result<Self, InvalidInput> {
        Self::new(n)
    }
}
impl From<TicketId> for u64 {
    fn from(v: TicketId) -> u64 {
        v.0
    }
}
impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How often an account's mailbox is polled: 1 to 60 minutes (default 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct PollInterval(u8);

impl PollInterval {
    pub const DEFAULT: PollInterval = PollInterval(2);

    pub fn minutes(n: u32) -> Result<Self, InvalidInput> {
        match u8::try_from(n) {
            Ok(m @ 1..=60) => Ok(Self(m)),
            _ => Err(InvalidInput::new(
                "poll interval",
                "must be from 1 to 60 minutes",
            )),
        }
    }
    pub fn as_minutes(self) -> u32 {
        u32::from(self.0)
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(60 * u64::from(self.0))
    }
    /// The EventBridge schedule expression: `rate(1 minute)`, `rate(N minutes)`.
    pub fn rate_expression(self) -> String {
        if self.0 == 1 {
            "rate(1 minute)".to_owned()
        } else {
            format!("rate({} minutes)", self.0)
        }
    }
}
impl Default for PollInterval {
    fn default() -> Self {
        Self::DEFAULT
    }
}
impl TryFrom<u8> for PollInterval {
    type Error = InvalidInput;
    fn try_from(n: u8) -> Result<Self, InvalidInput> {
        Self::minutes(u32::from(n))
    }
}
impl From<PollInterval> for u8 {
    fn from(v: PollInterval) -> u8 {
        v.0
    }
}

/// A host and port of the provider's IMAP or SMTP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(field: &'static str, host: &str, port: u16) -> Result<Self, InvalidInput> {
        let host = host.trim().to_ascii_lowercase();
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':');
        if !ok {
            return Err(InvalidInput::new(
                field,
                "must be a host name or IP address",
            ));
        }
        if port == 0 {
            return Err(InvalidInput::new(field, "port must be from 1 to 65535"));
        }
        Ok(Self { host, port })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The name of a secret in the [`Secrets`](crate::ports::Secrets) port. The store keeps only
/// names like this one, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretName {
    /// The IMAP/SMTP password of one PEC account.
    AccountPassword(AccountId),
    /// The Zendesk API token the connector calls Zendesk with (the agent e-mail it goes with
    /// is configuration, not a secret).
    ZendeskApiToken,
    /// The secret Zendesk signs webhook calls with.
    WebhookSigningSecret,
    /// The bearer token Zendesk's webhook calls must carry.
    WebhookBearerToken,
    /// The API or OAuth token of a registered Zendesk instance.
    ZendeskToken(InstanceId),
    /// The signing secret of a registered instance's webhook.
    InstanceWebhookSigningSecret(InstanceId),
    /// The bearer token of a registered instance's webhook.
    InstanceWebhookBearerToken(InstanceId),
    /// The bearer token admin calls must carry.
    AdminToken,
}

impl SecretName {
    /// A stable, path-like name: `account/<id>`, `zendesk-api-token`, ...
    pub fn key(&self) -> String {
        match self {
            SecretName::AccountPassword(id) => format!("account/{id}"),
            SecretName::ZendeskApiToken => "zendesk-api-token".to_owned(),
            SecretName::WebhookSigningSecret => "webhook-signing-secret".to_owned(),
            SecretName::WebhookBearerToken => "webhook-bearer-token".to_owned(),
            SecretName::ZendeskToken(i) => format!("zendesk/{i}/token"),
            SecretName::InstanceWebhookSigningSecret(i) => {
                format!("zendesk/{i}/webhook-signing-secret")
            }
            SecretName::InstanceWebhookBearerToken(i) => {
                format!("zendesk/{i}/webhook-bearer-token")
            }
            SecretName::AdminToken => "admin-token".to_owned(),
        }
    }

    pub fn parse_key(raw: &str) -> Result<Self, InvalidInput> {
        match raw {
            "zendesk-api-token" => Ok(SecretName::ZendeskApiToken),
            "webhook-signing-secret" => Ok(SecretName::WebhookSigningSecret),
            "webhook-bearer-token" => Ok(SecretName::WebhookBearerToken),
            "admin-token" => Ok(SecretName::AdminToken),
            other if other.starts_with("zendesk/") => {
                let rest = &other["zendesk/".len()..];
                let (id, what) = rest.split_once('/').ok_or_else(|| {
                    InvalidInput::new(
                        "secret name",
                        format!("{other:?} is not a secret the connector knows"),
                    )
                })?;
                let id = InstanceId::parse(id)?;
                match what {
                    "token" => Ok(SecretName::ZendeskToken(id)),
                    "webhook-signing-secret" => Ok(SecretName::InstanceWebhookSigningSecret(id)),
                    "webhook-bearer-token" => Ok(SecretName::InstanceWebhookBearerToken(id)),
                    _ => Err(InvalidInput::new(
                        "secret name",
                        format!("{other:?} is not a secret the connector knows"),
                    )),
                }
            }
            other => match other.strip_prefix("account/") {
                Some(id) => Ok(SecretName::AccountPassword(AccountId::parse(id)?)),
                None => Err(InvalidInput::new(
                    "secret name",
                    format!("{other:?} is not a secret the connector knows"),
                )),
            },
        }
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// A registered PEC account. Holds no password: only the name of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub address: PecAddress,
    pub imap: Endpoint,
    pub smtp: Endpoint,
    /// The login name, when the provider wants something other than the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    pub poll_interval: PollInterval,
    pub enabled: bool,
    /// Where the password is, in the [`Secrets`](crate::ports::Secrets) port (`account/<id>`).
    pub password_secret: String,
    /// Outbound template: subject and message, rendered by Zendesk from ticket placeholders.
    pub subject_template: String,
    pub message_template: String,
    /// Where the receipts of PEC sent from this account go.
    #[serde(default)]
    pub receipt_mode: ReceiptMode,
    /// Whether the files of an agent's comment leave with the PEC.
    #[serde(default)]
    pub outbound_attachments: AttachmentsPolicy,
    /// The mailbox's health as the last polls saw it (written only when it changes).
    #[serde(default)]
    pub health: AccountHealth,
    /// The Zendesk instance the account's tickets go to; `None`: the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zendesk_instance: Option<InstanceId>,
    /// What the connector created in Zendesk for this account.
    #[serde(default)]
    pub zendesk: ZendeskObjects,
    /// When the password was last set (app passwords expire: Aruba's after 4 months).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_set_at: Option<DateTime<Utc>>,
    /// Chosen at registration, part of every ticket marker: an account id deleted and
    /// registered again never takes an old ticket for a new message. `None` for accounts
    /// registered before markers carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Largest message imported whole (bytes); a larger one becomes a ticket with its headers
    /// and stays in the mailbox. `None`: the deployment's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The Zendesk objects provisioned for an account: the webhook and trigger category are shared
/// by every account of the Zendesk instance, the triggers are the account's own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZendeskObjects {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_category_id: Option<String>,
    /// "Reply by PEC Connector [address]".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_trigger_id: Option<u64>,
    /// The public-reply trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_reply_trigger_id: Option<u64>,
    /// The ticket fields that hold a PEC's facts (shared by every account of the instance).
    /// `None` for accounts provisioned before they existed: the facts go in a note instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact_fields: Option<FactFields>,
}

/// The ids of the ticket fields "PEC identificativo", "PEC data certificazione", "PEC gestore"
/// and "PEC firma": a new PEC ticket carries its facts there, in the create request itself, where
/// agents can search and report on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactFields {
    pub identificativo: u64,
    pub data: u64,
    pub gestore: u64,
    pub firma: u64,
}

/// One of a PEC's facts, as kept in a ticket field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fact {
    Identificativo,
    Data,
    Gestore,
    Firma,
}

impl Fact {
    pub const ALL: [Fact; 4] = [Fact::Identificativo, Fact::Data, Fact::Gestore, Fact::Firma];

    /// The field's title in Zendesk (how an existing field is found again).
    pub fn title(self) -> &'static str {
        match self {
            Fact::Identificativo => "PEC identificativo",
            Fact::Data => "PEC data certificazione",
            Fact::Gestore => "PEC gestore",
            Fact::Firma => "PEC firma",
        }
    }
}

impl FactFields {
    pub fn id(&self, fact: Fact) -> u64 {
        match fact {
            Fact::Identificativo => self.identificativo,
            Fact::Data => self.data,
            Fact::Gestore => self.gestore,
            Fact::Firma => self.firma,
        }
    }
}

/// What is wrong with an account's mailbox, if anything. One incident lasts from the first failed
/// poll to the next successful one; admins get one alert ticket per incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<AccountProblem>,
}

/// An ongoing incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountProblem {
    pub kind: ProblemKind,
    /// What the server or the network said (never a secret).
    pub message: String,
    pub since: DateTime<Utc>,
    /// The Zendesk ticket that alerted the admins, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_ticket: Option<TicketId>,
}

/// The kinds of mailbox trouble an admin must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// The server refused the login: wrong or expired (app) password, access not enabled.
    LoginRefused,
    /// The server's certificate is not trusted, or TLS failed.
    Tls,
    /// The server could not be reached or the connection broke.
    Unreachable,
    /// The password secret is missing or unreadable.
    Credentials,
}

/// Whether the attachments of an agent's comment are sent with the PEC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentsPolicy {
    /// As Zendesk's own e-mails do: on when the setting "Include attachments in emails"
    /// (`settings.tickets.email_attachments`) is on.
    #[default]
    Zendesk,
    /// Always sent.
    On,
    /// Never sent (the note lists them instead).
    Off,
}

/// Where a receipt for a PEC we sent is recorded. A receipt that matches nothing we sent always
/// opens a ticket of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptMode {
    /// An internal note on the ticket of the PEC it is about.
    #[default]
    Note,
    /// A new ticket per receipt, whose first comment is an internal note (as the established
    /// product does).
    Ticket,
    /// Both.
    Both,
}

impl Account {
    /// The name of this account's password secret.
    pub fn password_secret_name(&self) -> SecretName {
        SecretName::AccountPassword(self.id.clone())
    }
}

/// Where polling an account stopped: the mailbox's UIDVALIDITY, the highest UID processed, and
/// the UIDNEXT seen on first activation (nothing below it is imported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub uid_validity: UidValidity,
    /// Highest UID processed; 0 when nothing has been (`baseline_uid_next - 1` after activation).
    pub last_uid: u32,
    /// UIDNEXT when the account was first activated under this UIDVALIDITY.
    pub baseline_uid_next: u32,
}

impl Cursor {
    /// The cursor on first activation: everything below `uid_next` was there before us.
    pub fn first_activation(uid_validity: UidValidity, uid_next: u32) -> Self {
        Self {
            uid_validity,
            last_uid: uid_next.saturating_sub(1),
            baseline_uid_next: uid_next,
        }
    }

    /// The same cursor moved up to `uid`.
    pub fn advanced_to(self, uid: Uid) -> Self {
        Self {
            last_uid: uid.get(),
            ..self
        }
    }

    /// Whether moving from `self` to `next` is allowed: a new UIDVALIDITY starts over, within one
    /// UIDVALIDITY the cursor only moves up.
    pub fn can_move_to(&self, next: &Cursor) -> bool {
        self.uid_validity != next.uid_validity || next.last_uid >= self.last_uid
    }
}

/// Who holds (or wants) an account's lease: a unique token per poll run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseHolder(String);

impl LeaseHolder {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() || raw.len() > 200 || raw.chars().any(|c| c.is_control()) {
            return Err(InvalidInput::new(
                "lease holder",
                "must be 1 to 200 printable characters",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A fresh holder token: `<label>-<nanoseconds>-<counter>`, unique within this process and
    /// practically unique across processes.
    pub fn unique(label: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        Self(format!("{label}-{}-{nanos:x}-{n}", std::process::id()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LeaseHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lease on an account, as granted: who, until when, and the cursor and poll stats read with
/// it (so a poll needs no separate read of its cursor or stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub account: AccountId,
    pub holder: LeaseHolder,
    pub expires_at: DateTime<Utc>,
    pub cursor: Option<Cursor>,
    /// The account's poll stats, read with the lease (Default when none were stored).
    pub stats: PollStats,
}

/// What the polls of an account did, kept with its cursor (written by the lease release).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PollStats {
    pub last_poll_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The last failed poll's error (never a secret), cleared by a success.
    pub last_error: Option<String>,
    /// Totals since registration.
    pub tickets_created: u64,
    pub comments_added: u64,
    pub receipts_noted: u64,
    pub unreadable: u64,
    /// Messages that could not be imported and were parked (a "PEC non importabile" ticket with
    /// the raw message), so the mailbox went on.
    #[serde(skip_serializing_if = "is_zero")]
    pub parked: u64,
    /// Messages over the size limit, imported as a ticket with their headers only.
    #[serde(skip_serializing_if = "is_zero")]
    pub too_large: u64,
    /// Messages the server listed but did not return when fetched.
    #[serde(skip_serializing_if = "is_zero")]
    pub gaps: u64,
    /// The last parked message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_parked: Option<ParkedMessage>,
    /// The message the last polls stopped at with an error that is neither passing nor
    /// permanent: after a few such polls in a row it is parked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing: Option<FailingMessage>,
    /// Polls that stopped early to keep part of Zendesk's request limit for the agents (not
    /// failures: the next poll goes on).
    #[serde(skip_serializing_if = "is_zero")]
    pub rate_limit_stops: u64,
    /// Set when the last poll stopped early for Zendesk's request limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limited: Option<RateLimitStop>,
    /// What the polls did per day (UTC), the last [`ACTIVITY_DAYS`] days with any activity,
    /// oldest first: kept in the same write as the rest of the stats, so it costs no write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub daily: Vec<DayActivity>,
}

/// How many days of [`PollStats::daily`] are kept.
pub const ACTIVITY_DAYS: i64 = 30;

/// What happened on an account on one day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayActivity {
    pub day: NaiveDate,
    /// PEC and other messages imported (new tickets and comments).
    #[serde(default)]
    pub received: u64,
    /// PEC we sent that the provider accepted (its ricevuta di accettazione arrived).
    #[serde(default)]
    pub sent: u64,
    /// Receipts noted (accettazione, consegna, mancata consegna, ...).
    #[serde(default)]
    pub receipts: u64,
    /// Failed polls, and messages that could not be read or imported.
    #[serde(default)]
    pub failures: u64,
}

impl DayActivity {
    /// Nothing yet on `day`.
    pub fn empty(day: NaiveDate) -> Self {
        DayActivity {
            day,
            received: 0,
            sent: 0,
            receipts: 0,
            failures: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.received == 0 && self.sent == 0 && self.receipts == 0 && self.failures == 0
    }
}

impl PollStats {
    /// Adds `delta` to its day and forgets the days more than [`ACTIVITY_DAYS`] before it. Days
    /// stay in order, one entry each; a day with nothing to add creates no entry. A `delta` for a
    /// day older than the kept window (a clock gone back) is added to the oldest kept day.
    pub fn add_activity(&mut self, delta: DayActivity) {
        let newest = self
            .daily
            .last()
            .map_or(delta.day, |d| d.day.max(delta.day));
        let first_kept = newest - chrono::Days::new(ACTIVITY_DAYS as u64 - 1);
        self.daily.retain(|d| d.day >= first_kept);
        if delta.is_empty() {
            return;
        }
        let day = delta.day.max(first_kept);
        let at = self.daily.partition_point(|d| d.day < day);
        if self.daily.get(at).is_none_or(|d| d.day != day) {
            self.daily.insert(at, DayActivity::empty(day));
        }
        let entry = &mut self.daily[at];
        entry.received += delta.received;
        entry.sent += delta.sent;
        entry.receipts += delta.receipts;
        entry.failures += delta.failures;
    }
}

/// A poll that stopped early to keep part of Zendesk's request limit for the agents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitStop {
    pub at: DateTime<Utc>,
    /// New messages it left for the next poll.
    pub messages_left: u32,
    /// Zendesk's requests left in the current minute and its limit, as last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_left: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_limit: Option<u32>,
}

impl RateLimitStop {
    /// One line for the account's status.
    pub fn describe(&self) -> String {
        let zendesk = match (self.requests_left, self.request_limit) {
            (Some(left), Some(limit)) if limit > 0 => {
                format!("Zendesk had {left} of {limit} API requests left this minute")
            }
            _ => "Zendesk's API request limit was reached".to_owned(),
        };
        format!(
            "the last poll stopped early: {zendesk}, kept for the agents; {} message{} left \
             for the next poll",
            self.messages_left,
            if self.messages_left == 1 { "" } else { "s" }
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A message the mailbox could not import, parked so that later PEC still arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedMessage {
    pub uid_validity: u32,
    pub uid: u32,
    /// The ticket that holds it (or, when even that failed, the alert naming its UID).
    pub ticket: Option<u64>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A message that failed on consecutive polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailingMessage {
    pub uid_validity: u32,
    pub uid: u32,
    /// Consecutive polls that stopped at it.
    pub failures: u32,
    pub last_error: String,
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
// One lives at a time, briefly: the size of the granted lease (with its stats) is no concern.
#[allow(clippy::large_enum_variant)]
pub enum LeaseOutcome {
    Acquired(Lease),
    /// Someone else holds an unexpired lease.
    Held {
        holder: LeaseHolder,
        expires_at: DateTime<Utc>,
    },
}

/// What the connector did with an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    /// A new ticket was opened from it.
    TicketCreated,
    /// It was added as a comment to the ticket it answers.
    CommentAdded,
    /// It is a receipt, noted on the ticket of the PEC it is about.
    ReceiptNoted,
    /// It had a Message-ID already recorded: nothing new was created.
    Duplicate,
    /// It could not be imported: a ticket holds the raw message and the reason.
    Parked,
    /// A renumbered mailbox's message older than the last good poll: not imported again (the
    /// renumbering's alert ticket lists it).
    Skipped,
}

/// The idempotency record of one inbound message: (account, UIDVALIDITY, UID) and, when the
/// message has one, (account, Message-ID) both lead here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub account: AccountId,
    pub uid_validity: UidValidity,
    pub uid: Uid,
    pub message_id: Option<MessageId>,
    pub ticket: TicketId,
    pub outcome: MessageOutcome,
    pub recorded_at: DateTime<Utc>,
}

/// The answer to "record this message".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    Recorded,
    /// Someone recorded this message (by UID or by Message-ID) first: here is their record.
    AlreadyRecorded(MessageRecord),
}

/// Where a PEC we sent stands for one recipient, from the provider's receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Sent, no receipt yet.
    Pending,
    /// Ricevuta di accettazione: the sender's provider took it.
    Accepted,
    /// Ricevuta di avvenuta consegna: it reached the recipient's mailbox.
    Delivered,
    /// Ricevuta di non accettazione: the sender's provider refused it.
    NotAccepted,
    /// Avviso di mancata consegna / errore consegna (or a virus found by the recipient's
    /// provider): it did not reach the recipient.
    NotDelivered,
    /// Preavviso di mancata consegna: no delivery confirmed within 12 hours; the final word
    /// (consegna or mancata consegna) may still come.
    Delayed,
}

impl DeliveryState {
    /// How far along a recipient's delivery is: receipts only ever move it forward (they can
    /// arrive late or out of order), and a final state stays.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryState::Pending => 0,
            DeliveryState::Accepted => 1,
            DeliveryState::Delayed => 2,
            DeliveryState::Delivered | DeliveryState::NotDelivered | DeliveryState::NotAccepted => {
                3
            }
        }
    }
}

/// Where the sending of a PEC we compose stands. The record is written before the message is
/// handed to SMTP (`Sending`) and marked after, so receipts find their ticket even when the
/// process dies in between, and no later attempt sends a message already accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    /// Recorded, being handed to the provider (or the attempt died before it could say).
    Sending,
    /// The provider's SMTP server accepted it (end of DATA answered 250).
    #[default]
    Sent,
    /// Refused for good (password, blocked IP, size, recipient): a note says why.
    Failed,
}

impl SendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Sending => "sending",
            SendStatus::Sent => "sent",
            SendStatus::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        match raw {
            "sending" => Ok(SendStatus::Sending),
            "sent" => Ok(SendStatus::Sent),
            "failed" => Ok(SendStatus::Failed),
            other => Err(InvalidInput::new(
                "send status",
                format!("{other:?} is not one of sending, sent, failed"),
            )),
        }
    }
}

/// A PEC we sent: found later by our Message-ID or by the provider's identificativo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRecord {
    pub account: AccountId,
    pub message_id: MessageId,
    pub identificativo: Option<MessageId>,
    pub ticket: TicketId,
    pub recipients: Vec<PecAddress>,
    pub delivery: BTreeMap<PecAddress, DeliveryState>,
    /// When the record was written (just before the first hand-over to SMTP).
    pub sent_at: DateTime<Utc>,
    #[serde(default)]
    pub status: SendStatus,
}

impl OutboundRecord {
    /// A record of a PEC just sent: every recipient pending.
    pub fn sent(
        account: AccountId,
        message_id: MessageId,
        ticket: TicketId,
        recipients: Vec<PecAddress>,
        sent_at: DateTime<Utc>,
    ) -> Self {
        let delivery = recipients
            .iter()
            .map(|r| (r.clone(), DeliveryState::Pending))
            .collect();
        Self {
            account,
            message_id,
            identificativo: None,
            ticket,
            recipients,
            delivery,
            sent_at,
            status: SendStatus::Sent,
        }
    }

    /// The same record in another [`SendStatus`].
    pub fn with_status(mut self, status: SendStatus) -> Self {
        self.status = status;
        self
    }

    /// Whether the provider has shown, by any receipt, that it took the message: then it was
    /// sent, whatever our own status says (e.g. the connection dropped after DATA).
    pub fn provider_took_it(&self) -> bool {
        self.identificativo.is_some()
            || self
                .delivery
                .values()
                .any(|d| !matches!(d, DeliveryState::Pending | DeliveryState::NotAccepted))
    }

    /// Whether the provider refused the message (an avviso di non accettazione): nothing left.
    pub fn provider_refused_it(&self) -> bool {
        !self.provider_took_it()
            && self
                .delivery
                .values()
                .any(|d| *d == DeliveryState::NotAccepted)
    }
}

/// The id of one outbox entry, unique within its account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxId(String);

impl OutboxId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        let ok = !raw.is_empty()
            && raw.len() <= 200
            && raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !ok {
            return Err(InvalidInput::new(
                "outbox id",
                "must be 1 to 200 characters of a-z, A-Z, 0-9, -, _, . and :",
            ));
        }
        Ok(Self(raw.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(OutboxId);

/// A send waiting for (another) try. The payload says what to send (e.g. the ticket and comment);
/// it must never hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub account: AccountId,
    pub id: OutboxId,
    pub ticket: TicketId,
    pub payload: serde_json::Value,
    /// Tries so far (claims taken).
    pub attempts: u32,
    /// Not to be tried before this instant.
    pub not_before: DateTime<Utc>,
    pub last_error: Option<String>,
}

impl OutboxEntry {
    pub fn new(
        account: AccountId,
        id: OutboxId,
        ticket: TicketId,
        payload: serde_json::Value,
        not_before: DateTime<Utc>,
    ) -> Self {
        Self {
            account,
            id,
            ticket,
            payload,
            attempts: 0,
            not_before,
            last_error: None,
        }
    }
}

/// An account's poll schedule as the [`Schedules`](crate::ports::Schedules) port knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub account: AccountId,
    pub interval: PollInterval,
    pub enabled: bool,
}

impl Schedule {
    /// Where in each interval the account's polls fall: from 0 up to (not including) the
    /// interval, to the second, from a hash of the account id. Accounts spread evenly over the
    /// interval, so a thousand of them never start polling in the same second, and an account
    /// keeps its place whenever its schedule is written again.
    pub fn phase(&self) -> Duration {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.account.as_str().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Duration::from_secs(u64::from_be_bytes(first) % self.interval.as_duration().as_secs())
    }

    /// The account's first poll after `now`: the next second whose Unix time falls on the
    /// account's [`phase`](Schedule::phase) of the interval.
    pub fn first_run_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let period = i64::from(self.interval.as_minutes()) * 60;
        let phase = self.phase().as_secs() as i64;
        let t = now.timestamp();
        let mut start = t - t.rem_euclid(period) + phase;
        if start <= t {
            start += period;
        }
        DateTime::from_timestamp(start, 0).unwrap_or(now)
    }
}

/// The input an account's schedule sends to the poller: `{"account_id": "..."}`
/// (`events/poll.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollRequest {
    pub account_id: AccountId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_line_cleans_and_cuts() {
        assert_eq!(
            one_line("  Richiesta\tdi \r\n accesso  ", 255),
            "Richiesta di accesso"
        );
        let long = "è".repeat(300);
        let cut = one_line(&long, 255);
        assert_eq!(cut.chars().count(), 255);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line("\t\t", 10), "");
        assert_eq!(one_line("a\nb", usize::MAX), "a b");
    }

    #[test]
    fn markers_round_trip_old_and_new_and_refuse_others() {
        let old = TicketMarker::parse("pec:aruba-1:7:42").unwrap();
        assert_eq!(
            (
                old.account.as_str(),
                old.nonce.clone(),
                old.uid_validity.get(),
                old.uid.get()
            ),
            ("aruba-1", None, 7, 42)
        );
        assert_eq!(old.to_string(), "pec:aruba-1:7:42");
        let new = TicketMarker::parse("pec:aruba-1:0a1b2c3d4e5f:7:42").unwrap();
        assert_eq!(new.nonce.as_deref(), Some("0a1b2c3d4e5f"));
        assert_eq!(new.to_string(), "pec:aruba-1:0a1b2c3d4e5f:7:42");
        assert_ne!(old, new, "another registration of the same id");
        for bad in [
            "",
            "pec:",
            "pec:a:1",
            "pec:a:n0n:1:2",
            "pec:a:ABC:1:2",
            "pec:a:1:2:3:4",
            "x:a:1:2",
            "pec:A:1:2",
            "pec:a:x:2",
        ] {
            assert!(TicketMarker::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_non_accettazione_is_no_proof_of_sending() {
        let to = PecAddress::parse("a@pec.it").unwrap();
        let mut record = OutboundRecord::sent(
            AccountId::parse("a1").unwrap(),
            MessageId::parse("m1@pec.it").unwrap(),
            TicketId::new(1).unwrap(),
            vec![to.clone()],
            Utc::now(),
        )
        .with_status(SendStatus::Sending);
        assert!(!record.provider_took_it() && !record.provider_refused_it());
        record
            .delivery
            .insert(to.clone(), DeliveryState::NotAccepted);
        assert!(!record.provider_took_it(), "refused is not taken");
        assert!(record.provider_refused_it());
        record.delivery.insert(to, DeliveryState::Delayed);
        assert!(record.provider_took_it());
        assert!(!record.provider_refused_it());
    }

    #[test]
    fn delivery_only_moves_forward() {
        use DeliveryState::*;
        assert!(Pending.rank() < Accepted.rank());
        assert!(Accepted.rank() < Delayed.rank());
        for last in [Delivered, NotDelivered, NotAccepted] {
            assert!(Delayed.rank() < last.rank());
        }
    }

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("aruba-1").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a#b", "a/b", &"x".repeat(41)] {
            let err = AccountId::parse(bad).unwrap_err();
            assert_eq!(err.field, "account id", "{bad:?}");
        }
    }

    #[test]
    fn addresses_are_lower_cased_and_checked() {
        let a = PecAddress::parse("  Ufficio.Protocollo@PEC.Comune.IT ").unwrap();
        assert_eq!(a.as_str(), "ufficio.protocollo@pec.comune.it");
        for bad in [
            "",
            "nobody",
            "@pec.it",
            "a@",
            "a@it",
            "a..b@pec.it",
            "a@pec..it",
            "a@-pec.it",
            "a b@pec.it",
            "a@b@pec.it",
        ] {
            assert!(PecAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn message_ids_lose_their_brackets() {
        let m = MessageId::parse(" <opec123.20240101@pec.aruba.it> ").unwrap();
        assert_eq!(m.as_str(), "opec123.20240101@pec.aruba.it");
        assert!(MessageId::parse("<>").is_err());
        assert!(MessageId::parse("a b@c").is_err());
    }

    #[test]
    fn intervals_and_rates() {
        assert_eq!(
            PollInterval::minutes(1).unwrap().rate_expression(),
            "rate(1 minute)"
        );
        assert_eq!(
            PollInterval::minutes(60).unwrap().rate_expression(),
            "rate(60 minutes)"
        );
        assert!(PollInterval::minutes(0).is_err());
        assert!(PollInterval::minutes(61).is_err());
        assert!(serde_json::from_str::<PollInterval>("0").is_err());
    }

    #[test]
    fn numbers_are_non_zero() {
        assert!(Uid::new(0).is_err());
        assert!(UidValidity::parse("x").is_err());
        assert_eq!(TicketId::parse("42").unwrap().get(), 42);
        assert!(serde_json::from_str::<Uid>("0").is_err());
    }

    #[test]
    fn secret_names_round_trip() {
        for n in [
            SecretName::AccountPassword(AccountId::parse("a1").unwrap()),
            SecretName::ZendeskApiToken,
            SecretName::WebhookSigningSecret,
            SecretName::AdminToken,
        ] {
            assert_eq!(SecretName::parse_key(&n.key()).unwrap(), n);
        }
        assert!(SecretName::parse_key("account/../x").is_err());
    }

    #[test]
    fn cursor_moves_up_or_starts_over() {
        let v1 = UidValidity::new(1).unwrap();
        let v2 = UidValidity::new(2).unwrap();
        let c = Cursor::first_activation(v1, 10);
        assert_eq!(c.last_uid, 9);
        assert!(c.can_move_to(&c.advanced_to(Uid::new(12).unwrap())));
        assert!(!c.can_move_to(&c.advanced_to(Uid::new(3).unwrap())));
        assert!(c.can_move_to(&Cursor::first_activation(v2, 1)));
    }

    #[test]
    fn a_thousand_accounts_spread_over_the_interval() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:07Z")
            .unwrap()
            .with_timezone(&Utc);
        for minutes in [1, 2, 15] {
            let interval = PollInterval::minutes(minutes).unwrap();
            let period = i64::from(minutes) * 60;
            let mut per_second: BTreeMap<i64, usize> = BTreeMap::new();
            for n in 0..1000 {
                let s = Schedule {
                    account: AccountId::parse(&format!("ufficio-{n}")).unwrap(),
                    interval,
                    enabled: true,
                };
                let first = s.first_run_after(now);
                assert!(first > now && first <= now + chrono::Duration::seconds(period));
                assert_eq!(
                    first.timestamp().rem_euclid(period),
                    s.phase().as_secs() as i64
                );
                // Written again later, the schedule keeps its place in the interval.
                let later = s.first_run_after(now + chrono::Duration::seconds(4321));
                assert_eq!((later - first).num_seconds().rem_euclid(period), 0);
                *per_second.entry(first.timestamp()).or_default() += 1;
            }
            let busiest = per_second.values().max().copied().unwrap_or_default();
            // 1000 accounts over `period` seconds: about 1000 / period each second.
            let even = 1000 / period as usize + 1;
            assert!(
                busiest <= even * 3 + 5 && per_second.len() as i64 >= period.min(1000) / 2,
                "{minutes} min: {busiest} polls in the busiest second, {} seconds used",
                per_second.len()
            );
        }
    }

    proptest! {
        #[test]
        fn parsed_addresses_are_stable(s in "[A-Za-z0-9._%+-]{1,20}@[A-Za-z0-9-]{1,10}\\.[A-Za-z]{2,5}") {
            if let Ok(a) = PecAddress::parse(&s) {
                prop_assert_eq!(PecAddress::parse(a.as_str()).unwrap(), a.clone());
                prop_assert_eq!(a.as_str().to_ascii_lowercase(), a.as_str());
            }
        }

        #[test]
        fn account_ids_never_hold_key_separators(s in "\\PC{0,50}") {
            if let Ok(id) = AccountId::parse(&s) {
                prop_assert!(!id.as_str().contains('#') && !id.as_str().contains('/'));
            }
        }
    }

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    fn activity(d: &str, received: u64, failures: u64) -> DayActivity {
        DayActivity {
            received,
            failures,
            ..DayActivity::empty(day(d))
        }
    }

    #[test]
    fn daily_activity_folds_into_one_entry_per_day_in_order() {
        let mut stats = PollStats::default();
        stats.add_activity(activity("2025-03-02", 2, 0));
        stats.add_activity(activity("2025-03-02", 1, 1));
        stats.add_activity(DayActivity::empty(day("2025-03-03")));
        stats.add_activity(activity("2025-03-01", 0, 1));
        assert_eq!(
            stats.daily,
            [activity("2025-03-01", 0, 1), activity("2025-03-02", 3, 1)],
            "days in order, an empty poll adds no day"
        );
        // Survives a JSON round trip (the stores keep the stats as JSON or a DynamoDB map).
        let back: PollStats =
            serde_json::from_value(serde_json::to_value(&stats).unwrap()).unwrap();
        assert_eq!(back, stats);
        assert!(
            serde_json::to_value(PollStats::default())
                .unwrap()
                .get("daily")
                .is_none()
        );
    }

    #[test]
    fn daily_activity_keeps_the_last_thirty_days() {
        let mut stats = PollStats::default();
        let start = day("2025-01-01");
        for i in 0..45 {
            let d = start + chrono::Days::new(i);
            stats.add_activity(DayActivity {
                received: 1,
                ..DayActivity::empty(d)
            });
        }
        assert_eq!(stats.daily.len(), ACTIVITY_DAYS as usize);
        assert_eq!(stats.daily[0].day, day("2025-01-16"));
        assert_eq!(stats.daily[29].day, day("2025-02-14"));
        // A day with nothing new still moves the window on.
        stats.add_activity(DayActivity::empty(day("2025-03-10")));
        assert_eq!(stats.daily.first().map(|d| d.day), Some(day("2025-02-09")));
        assert_eq!(stats.daily.len(), 6);
        stats.add_activity(DayActivity::empty(day("2025-04-10")));
        assert_eq!(stats.daily, []);
        // A clock gone back lands on the oldest kept day, never before the window.
        stats.add_activity(activity("2025-04-10", 1, 0));
        stats.add_activity(activity("2024-12-01", 1, 0));
        assert_eq!(
            stats.daily,
            [activity("2025-03-12", 1, 0), activity("2025-04-10", 1, 0)]
        );
    }
}
