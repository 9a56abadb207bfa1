//! What an admin sends to register or change a PEC account, checked field by field.
//!
//! Every refusal is an [`InvalidInput`] naming the JSON field at fault, so the HTTP answer can say
//! exactly what to fix. Unknown fields are refused too (a typo must not be silently ignored).

use serde::Deserialize;
use serde_json::Value;

use crate::domain::{
    AccountId, AttachmentsPolicy, Endpoint, InstanceId, InvalidInput, PecAddress, PollInterval,
    ReceiptMode,
};

/// The known PEC providers' servers (reference `pec-format.md` §13): IMAPS 993, SMTPS 465.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    /// How admins know the provider.
    pub label: &'static str,
    pub imap_host: &'static str,
    pub smtp_host: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "aruba",
        label: "Aruba PEC",
        imap_host: "imaps.pec.aruba.it",
        smtp_host: "smtps.pec.aruba.it",
    },
    Preset {
        name: "poste",
        label: "Poste Italiane (Postecert)",
        imap_host: "mail.postecert.it",
        smtp_host: "mail.postecert.it",
    },
    Preset {
        name: "legalmail",
        label: "Legalmail (InfoCert)",
        imap_host: "mbox.cert.legalmail.it",
        smtp_host: "sendm.cert.legalmail.it",
    },
    Preset {
        name: "namirial",
        label: "Namirial (Sicurezza Postale)",
        imap_host: "imaps.sicurezzapostale.it",
        smtp_host: "smtps.sicurezzapostale.it",
    },
    Preset {
        name: "actalis",
        label: "Actalis",
        imap_host: "imap.pec.actalis.it",
        smtp_host: "smtp.pec.actalis.it",
    },
    Preset {
        name: "register",
        label: "Register.it",
        imap_host: "imap.pec-email.com",
        smtp_host: "smtp.pec-email.com",
    },
];

pub const IMAPS_PORT: u16 = 993;
pub const SMTPS_PORT: u16 = 465;

/// The outbound template the established product starts with.
pub const DEFAULT_SUBJECT: &str = "{{ticket.title}}";
pub const DEFAULT_MESSAGE: &str = "{{ticket.latest_comment_html}}";

/// `POST /accounts`: a new account (or the same address again, which updates it).
#[derive(Debug, Clone)]
pub struct Registration {
    /// Chosen by the admin, or derived from the address.
    pub id: AccountId,
    pub address: PecAddress,
    pub password: secrecy::SecretString,
    pub username: Option<String>,
    pub imap: Endpoint,
    pub smtp: Endpoint,
    /// When not given, the deployment's default applies.
    pub poll_interval: Option<PollInterval>,
    /// The outbound template, when given: a new account takes [`DEFAULT_SUBJECT`] /
    /// [`DEFAULT_MESSAGE`] without it, a registered one keeps what its trigger has in Zendesk.
    pub subject_template: Option<String>,
    pub message_template: Option<String>,
    pub receipt_mode: ReceiptMode,
    pub outbound_attachments: AttachmentsPolicy,
    /// Add "tags do not contain pec_connector or any reply tag" to Zendesk's standard requester
    /// notification triggers, so PEC requesters get PEC only (off by default).
    pub guard_notifications: bool,
    /// A registered Zendesk instance; `None`: the deployment's default.
    pub zendesk_instance: Option<InstanceId>,
    /// Largest message imported whole, in MB; `None`: the deployment's default.
    pub max_message_mb: Option<u64>,
}

/// `PATCH /accounts/{id}`: only what is given changes.
#[derive(Debug, Clone)]
pub struct Changes {
    pub password: Option<secrecy::SecretString>,
    pub username: Option<Option<String>>,
    pub imap: EndpointChange,
    pub smtp: EndpointChange,
    pub poll_interval: Option<PollInterval>,
    pub subject_template: Option<String>,
    pub message_template: Option<String>,
    pub receipt_mode: Option<ReceiptMode>,
    pub outbound_attachments: Option<AttachmentsPolicy>,
    pub enabled: Option<bool>,
    pub guard_notifications: Option<bool>,
    pub max_message_mb: Option<u64>,
}

/// A server's host and port as a `PATCH` gives them: either may be left out, to keep the
/// account's current value.
#[derive(Debug, Clone)]
pub struct EndpointChange {
    host_field: &'static str,
    port_field: &'static str,
    pub host: Option<String>,
    pub port: Option<u16>,
}

impl EndpointChange {
    /// Whether the host or the port changes.
    pub fn is_given(&self) -> bool {
        self.host.is_some() || self.port.is_some()
    }

    /// The server after the change to `current`; `None` when nothing changes. An error names
    /// the field at fault.
    pub fn apply(&self, current: &Endpoint) -> Result<Option<Endpoint>, InvalidInput> {
        if !self.is_given() {
            return Ok(None);
        }
        endpoint(
            self.host_field,
            self.port_field,
            self.host.clone().or_else(|| Some(current.host.clone())),
            self.port.or(Some(current.port)),
            current.port,
        )
        .map(Some)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistration {
    id: Option<Value>,
    address: Option<Value>,
    password: Option<Value>,
    username: Option<Value>,
    provider: Option<Value>,
    imap_host: Option<Value>,
    imap_port: Option<Value>,
    smtp_host: Option<Value>,
    smtp_port: Option<Value>,
    poll_interval_minutes: Option<Value>,
    subject_template: Option<Value>,
    message_template: Option<Value>,
    receipt_mode: Option<Value>,
    outbound_attachments: Option<Value>,
    enabled: Option<Value>,
    guard_notifications: Option<Value>,
    zendesk_instance: Option<Value>,
    max_message_mb: Option<Value>,
}

fn bad(field: &'static str, reason: impl Into<String>) -> InvalidInput {
    InvalidInput::new(field, reason)
}

fn raw(body: &[u8]) -> Result<RawRegistration, InvalidInput> {
    serde_json::from_slice::<RawRegistration>(body).map_err(|e| {
        let text = e.to_string();
        // serde names an unknown field as "unknown field `x`, expected one of ...".
        match text.split('`').nth(1) {
            Some(field) if text.starts_with("unknown field") => bad(
                "body",
                format!("unknown field {field:?}; see GET /openapi.json for the fields"),
            ),
            _ => bad(
                "body",
                format!("not a JSON object of account fields: {text}"),
            ),
        }
    })
}

fn string(field: &'static str, v: &Option<Value>) -> Result<Option<String>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

fn port(field: &'static str, v: &Option<Value>) -> Result<Option<u16>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(p @ 1..=65535) => Ok(Some(p as u16)),
            _ => Err(bad(field, "must be a port from 1 to 65535")),
        },
        Some(_) => Err(bad(field, "must be a number from 1 to 65535")),
    }
}

fn one_line(field: &'static str, text: &str, max: usize) -> Result<String, InvalidInput> {
    if text.chars().any(|c| c.is_control() && c != '\t') {
        return Err(bad(
            field,
            "must not contain line breaks or control characters",
        ));
    }
    if text.chars().count() > max {
        return Err(bad(field, format!("must be at most {max} characters")));
    }
    Ok(text.to_owned())
}

fn template(
    field: &'static str,
    v: &Option<Value>,
    max: usize,
) -> Result<Option<String>, InvalidInput> {
    let Some(text) = string(field, v)? else {
        return Ok(None);
    };
    if text.trim().is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    if text.len() > max {
        return Err(bad(field, format!("must be at most {max} bytes")));
    }
    if text.contains('\0') {
        return Err(bad(field, "must not contain NUL characters"));
    }
    Ok(Some(text))
}

fn password(v: &Option<Value>) -> Result<Option<secrecy::SecretString>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(bad("password", "must not be empty")),
        Some(Value::String(s)) if s.len() > 1024 => {
            Err(bad("password", "must be at most 1024 bytes"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(bad("password", "must not contain control characters"))
        }
        Some(Value::String(s)) => Ok(Some(secrecy::SecretString::from(s.clone()))),
        // Never echo what was sent in the password field.
        Some(_) => Err(bad("password", "must be a string")),
    }
}

fn interval(v: &Option<Value>) -> Result<Option<PollInterval>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .ok_or_else(|| bad("poll_interval_minutes", "must be from 1 to 60 minutes"))
            .and_then(|m| {
                PollInterval::minutes(m).map_err(|e| bad("poll_interval_minutes", e.reason))
            })
            .map(Some),
        Some(_) => Err(bad(
            "poll_interval_minutes",
            "must be a number from 1 to 60",
        )),
    }
}

/// The largest message imported whole: 1 to 2048 MB (a message above it becomes a ticket with
/// its headers; mind the poller's memory).
fn max_message_mb(v: &Option<Value>) -> Result<Option<u64>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|m| (1..=2048).contains(m))
            .map(Some)
            .ok_or_else(|| {
                bad(
                    "max_message_mb",
                    "must be a whole number of MB from 1 to 2048",
                )
            }),
        Some(_) => Err(bad(
            "max_message_mb",
            "must be a number of MB from 1 to 2048",
        )),
    }
}

fn receipt_mode(v: &Option<Value>) -> Result<Option<ReceiptMode>, InvalidInput> {
    match string("receipt_mode", v)?.as_deref() {
        None => Ok(None),
        Some("note") => Ok(Some(ReceiptMode::Note)),
        Some("ticket") => Ok(Some(ReceiptMode::Ticket)),
        Some("both") => Ok(Some(ReceiptMode::Both)),
        Some(_) => Err(bad("receipt_mode", "must be one of note, ticket, both")),
    }
}

fn attachments(v: &Option<Value>) -> Result<Option<AttachmentsPolicy>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(AttachmentsPolicy::On)),
        Some(Value::Bool(false)) => Ok(Some(AttachmentsPolicy::Off)),
        Some(Value::String(s)) => match s.as_str() {
            "zendesk" => Ok(Some(AttachmentsPolicy::Zendesk)),
            "on" => Ok(Some(AttachmentsPolicy::On)),
            "off" => Ok(Some(AttachmentsPolicy::Off)),
            _ => Err(bad(
                "outbound_attachments",
                "must be one of zendesk, on, off (or true/false)",
            )),
        },
        Some(_) => Err(bad(
            "outbound_attachments",
            "must be one of zendesk, on, off (or true/false)",
        )),
    }
}

fn flag(field: &'static str, v: &Option<Value>) -> Result<Option<bool>, InvalidInput> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad(field, "must be true or false")),
    }
}

fn username(v: &Option<Value>) -> Result<Option<String>, InvalidInput> {
    match string("username", v)? {
        None => Ok(None),
        Some(u) if u.trim().is_empty() => Ok(None),
        Some(u) => Ok(Some(one_line("username", u.trim(), 320)?)),
    }
}

fn preset(v: &Option<Value>) -> Result<Option<&'static Preset>, InvalidInput> {
    match string("provider", v)? {
        None => Ok(None),
        Some(name) => PRESETS
            .iter()
            .find(|p| p.name == name.trim().to_ascii_lowercase())
            .map(Some)
            .ok_or_else(|| {
                let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
                bad("provider", format!("must be one of {}", names.join(", ")))
            }),
    }
}

fn endpoint(
    host_field: &'static str,
    port_field: &'static str,
    host: Option<String>,
    port: Option<u16>,
    default_port: u16,
) -> Result<Endpoint, InvalidInput> {
    let host = host.ok_or_else(|| {
        bad(
            host_field,
            "is required (or give \"provider\": aruba, poste, legalmail, namirial, actalis, register)",
        )
    })?;
    Endpoint::parse(host_field, &host, port.unwrap_or(default_port)).map_err(|e| {
        bad(
            if port == Some(0) {
                port_field
            } else {
                host_field
            },
            e.reason,
        )
    })
}

/// An account id from an address: `protocollo@pec.comune.it` → `protocollo-pec-comune-it`.
pub fn id_from_address(address: &PecAddress) -> AccountId {
    let mut id = String::new();
    for c in address.as_str().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') && !id.is_empty() {
            id.push('-');
        }
    }
    if id.len() > 40 {
        // Keep it unique: a short digest of the whole address at the end.
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(address.as_str().as_bytes());
        let tail = pec::encode::hex(&digest[..4]);
        id.truncate(31);
        id = format!("{}-{tail}", id.trim_end_matches('-'));
    }
    let id = id.trim_matches('-').to_owned();
    AccountId::parse(&id).unwrap_or_else(|_| AccountId::parse("account").expect("valid"))
}

impl Registration {
    /// Reads and checks a `POST /accounts` body.
    pub fn parse(body: &[u8]) -> Result<Registration, InvalidInput> {
        let r = raw(body)?;
        let address = string("address", &r.address)?
            .ok_or_else(|| bad("address", "is required"))
            .and_then(|a| PecAddress::parse(&a).map_err(|e| bad("address", e.reason)))?;
        let password = password(&r.password)?.ok_or_else(|| bad("password", "is required"))?;
        let id = match string("id", &r.id)? {
            Some(id) => AccountId::parse(&id).map_err(|e| bad("id", e.reason))?,
            None => id_from_address(&address),
        };
        let preset = preset(&r.provider)?;
        let imap_host =
            string("imap_host", &r.imap_host)?.or_else(|| preset.map(|p| p.imap_host.to_owned()));
        let smtp_host =
            string("smtp_host", &r.smtp_host)?.or_else(|| preset.map(|p| p.smtp_host.to_owned()));
        let imap = endpoint(
            "imap_host",
            "imap_port",
            imap_host,
            port("imap_port", &r.imap_port)?,
            IMAPS_PORT,
        )?;
        let smtp = endpoint(
            "smtp_host",
            "smtp_port",
            smtp_host,
            port("smtp_port", &r.smtp_port)?,
            SMTPS_PORT,
        )?;
        if r.enabled.is_some() {
            return Err(bad("enabled", "is set with PATCH, not at registration"));
        }
        Ok(Registration {
            id,
            address,
            password,
            username: username(&r.username)?,
            imap,
            smtp,
            poll_interval: interval(&r.poll_interval_minutes)?,
            subject_template: template("subject_template", &r.subject_template, 1000)?
                .map(|s| one_line("subject_template", &s, 1000))
                .transpose()?,
            message_template: template("message_template", &r.message_template, 60_000)?,
            receipt_mode: receipt_mode(&r.receipt_mode)?.unwrap_or_default(),
            outbound_attachments: attachments(&r.outbound_attachments)?.unwrap_or_default(),
            guard_notifications: flag("guard_notifications", &r.guard_notifications)?
                .unwrap_or(false),
            zendesk_instance: string("zendesk_instance", &r.zendesk_instance)?
                .map(|i| InstanceId::parse(&i).map_err(|e| bad("zendesk_instance", e.reason)))
                .transpose()?,
            max_message_mb: max_message_mb(&r.max_message_mb)?,
        })
    }
}

impl Changes {
    /// Reads and checks a `PATCH /accounts/{id}` body. `address`, `id` and `provider` cannot
    /// change (register another account instead). A host or port is checked against the
    /// account's current server when applied ([`EndpointChange::apply`]).
    pub fn parse(body: &[u8]) -> Result<Changes, InvalidInput> {
        let r = raw(body)?;
        for (field, v) in [
            ("address", &r.address),
            ("id", &r.id),
            ("provider", &r.provider),
        ] {
            if v.is_some() {
                return Err(bad(
                    field,
                    "cannot be changed; register a new account instead",
                ));
            }
        }
        let endpoint_change = |host_field, port_field, host: &Option<Value>, p: &Option<Value>| {
            Ok::<_, InvalidInput>(EndpointChange {
                host_field,
                port_field,
                host: string(host_field, host)?,
                port: port(port_field, p)?,
            })
        };
        let enabled = flag("enabled", &r.enabled)?;
        Ok(Changes {
            password: password(&r.password)?,
            username: r
                .username
                .as_ref()
                .map(|_| username(&r.username))
                .transpose()?,
            imap: endpoint_change("imap_host", "imap_port", &r.imap_host, &r.imap_port)?,
            smtp: endpoint_change("smtp_host", "smtp_port", &r.smtp_host, &r.smtp_port)?,
            poll_interval: interval(&r.poll_interval_minutes)?,
            subject_template: template("subject_template", &r.subject_template, 1000)?
                .map(|s| one_line("subject_template", &s, 1000))
                .transpose()?,
            message_template: template("message_template", &r.message_template, 60_000)?,
            receipt_mode: receipt_mode(&r.receipt_mode)?,
            outbound_attachments: attachments(&r.outbound_attachments)?,
            enabled,
            guard_notifications: flag("guard_notifications", &r.guard_notifications)?,
            max_message_mb: max_message_mb(&r.max_message_mb)?,
        })
    }

    /// Whether the mailbox must be logged in to again before saving.
    pub fn needs_login_check(&self) -> bool {
        self.password.is_some()
            || self.username.is_some()
            || self.imap.is_given()
            || self.smtp.is_given()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn reg(json: &str) -> Result<Registration, InvalidInput> {
        Registration::parse(json.as_bytes())
    }

    #[test]
    fn a_preset_fills_hosts_and_ports() {
        let r = reg(r#"{"address": "Protocollo@PEC.Comune.it", "password": "s3greta", "provider": "aruba"}"#)
            .unwrap();
        assert_eq!(r.address.as_str(), "protocollo@pec.comune.it");
        assert_eq!(r.id.as_str(), "protocollo-pec-comune-it");
        assert_eq!(r.imap.to_string(), "imaps.pec.aruba.it:993");
        assert_eq!(r.smtp.to_string(), "smtps.pec.aruba.it:465");
        assert_eq!(r.poll_interval, None);
        assert_eq!(
            r.subject_template, None,
            "the default applies to new accounts only"
        );
        assert_eq!(r.password.expose_secret(), "s3greta");
        assert_eq!(r.outbound_attachments, AttachmentsPolicy::Zendesk);
    }

    #[test]
    fn every_bad_field_is_named() {
        let base = r#""address": "a@pec.it", "password": "x", "provider": "poste""#;
        for (extra, field) in [
            (r#""poll_interval_minutes": 0"#, "poll_interval_minutes"),
            (r#""poll_interval_minutes": 61"#, "poll_interval_minutes"),
            (r#""imap_port": 0"#, "imap_port"),
            (r#""smtp_port": 70000"#, "smtp_port"),
            (r#""receipt_mode": "email""#, "receipt_mode"),
            (r#""outbound_attachments": 3"#, "outbound_attachments"),
            (r#""subject_template": "a\nb""#, "subject_template"),
            (r#""imap_host": "bad host!""#, "imap_host"),
            (r#""id": "Bad_Id""#, "id"),
            (r#""colour": "blue""#, "body"),
        ] {
            let err = reg(&format!("{{{base}, {extra}}}")).unwrap_err();
            assert_eq!(err.field, field, "{extra}: {err}");
        }
        for (json, field) in [
            (r#"{"password": "x", "provider": "aruba"}"#, "address"),
            (
                r#"{"address": "not an address", "password": "x", "provider": "aruba"}"#,
                "address",
            ),
            (
                r#"{"address": "a@pec.it", "provider": "aruba"}"#,
                "password",
            ),
            (
                r#"{"address": "a@pec.it", "password": 12345, "provider": "aruba"}"#,
                "password",
            ),
            (
                r#"{"address": "a@pec.it", "password": "x", "provider": "gmail"}"#,
                "provider",
            ),
            (r#"{"address": "a@pec.it", "password": "x"}"#, "imap_host"),
            (r#"[1]"#, "body"),
        ] {
            let err = reg(json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(!err.to_string().contains("12345"), "never echo a password");
        }
    }

    #[test]
    fn long_addresses_get_short_unique_ids() {
        let a =
            PecAddress::parse("ufficio.protocollo.generale.settore@pec.comune.esempio.it").unwrap();
        let b = PecAddress::parse("ufficio.protocollo.generale.settore@pec.comune.esempio2.it")
            .unwrap();
        let (ia, ib) = (id_from_address(&a), id_from_address(&b));
        assert!(ia.as_str().len() <= 40, "{ia}");
        assert_ne!(ia, ib);
    }

    #[test]
    fn changes_keep_what_is_not_given() {
        let imap = Endpoint::parse("imap", "imaps.pec.aruba.it", 993).unwrap();
        let smtp = Endpoint::parse("smtp", "smtps.pec.aruba.it", 465).unwrap();
        let c =
            Changes::parse(br#"{"imap_port": 10993, "subject_template": "Re: {{ticket.title}}"}"#)
                .unwrap();
        assert_eq!(
            c.imap.apply(&imap).unwrap().unwrap().to_string(),
            "imaps.pec.aruba.it:10993"
        );
        assert!(c.smtp.apply(&smtp).unwrap().is_none() && c.password.is_none());
        assert!(c.needs_login_check());
        let c = Changes::parse(br#"{"poll_interval_minutes": 5}"#).unwrap();
        assert!(!c.needs_login_check());
        assert_eq!(
            Changes::parse(br#"{"address": "b@pec.it"}"#)
                .unwrap_err()
                .field,
            "address"
        );
    }
}
