//! Composing the PEC we send: an [`OutboundMessage`] in, raw RFC 5322 bytes out, ready for the
//! [`Mailer`](crate::mailer::Mailer).
//!
//! [`compose`] writes, with lettre's builder: From (the account's PEC address), To, Subject,
//! Date, Message-ID ([`message_id`]: ours, stable across retries of one send), In-Reply-To and
//! References (when the ticket came from a PEC), then a `multipart/alternative` of a UTF-8 text
//! and HTML body, wrapped in `multipart/mixed` only when there are attachments (base64, file
//! names as lettre writes them: RFC 2231 / RFC 2047 when not ASCII). Never a Bcc header.
//!
//! Nothing reaches a header unchecked: a line break or other control character in the subject,
//! the sender's name or a file name is a [`ComposeError`], never an injected header. Boundaries
//! are derived from the content, so the same inputs always give the same bytes.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, MultiPartKind, SinglePart};
use lettre::{Address, Message};
use pec::encode::hex;
use sha2::{Digest, Sha256};

use crate::domain::{Account, MessageId, PecAddress, TicketId};
use crate::outbound::webhook::{MAX_RECIPIENTS, MAX_SUBJECT_CHARS};

/// A PEC to send, as the outbound use case gathered it from the ticket and the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// The account's PEC address.
    pub from: PecAddress,
    /// A display name for From (e.g. the organisation's name).
    pub from_name: Option<String>,
    pub to: Vec<PecAddress>,
    pub subject: String,
    pub html: String,
    /// The text alternative; derived from `html` ([`html_to_text`]) when absent.
    pub text: Option<String>,
    pub attachments: Vec<OutboundFile>,
    /// The PEC the ticket came from, when it did.
    pub in_reply_to: Option<MessageId>,
    pub references: Vec<MessageId>,
    pub ticket: TicketId,
}

/// A file attached to the PEC (a comment's attachment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundFile {
    pub filename: String,
    /// e.g. `application/pdf`.
    pub content_type: String,
    pub data: Vec<u8>,
}

/// How big a PEC may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComposeLimits {
    /// Most recipients of one PEC (default: the webhook's limit, 50).
    pub max_recipients: usize,
    /// Largest message size × number of recipients, in bytes (default 50 MB). PEC providers
    /// count a message once per recipient against their limit (Aruba: 50 MB on standard boxes),
    /// and refuse the whole send when it is over.
    pub max_total_bytes: usize,
}

impl Default for ComposeLimits {
    fn default() -> Self {
        Self {
            max_recipients: MAX_RECIPIENTS,
            max_total_bytes: 50 * 1000 * 1000,
        }
    }
}

/// Why a PEC could not be composed. Each message names the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(
        "cannot compose the PEC: the {field} contains a line break or another control character"
    )]
    ControlCharacter { field: &'static str },
    #[error("cannot compose the PEC: the {field} is empty")]
    Empty { field: &'static str },
    #[error("cannot compose the PEC: the subject is longer than {limit} characters")]
    SubjectTooLong { limit: usize },
    #[error("cannot compose the PEC: there is no recipient")]
    NoRecipient,
    #[error("cannot compose the PEC: {count} recipients; the limit is {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    #[error(
        "cannot compose the PEC: the content type {content_type:?} of attachment {filename:?} is not valid"
    )]
    BadContentType {
        filename: String,
        content_type: String,
    },
    #[error(
        "cannot compose the PEC: {size} bytes to {recipients} recipient(s) is over the limit of {limit} bytes (PEC providers count the size once per recipient and refuse the send)"
    )]
    TooLarge {
        size: usize,
        recipients: usize,
        limit: usize,
    },
    #[error("cannot compose the PEC: the {field} is not valid: {source}")]
    Lettre {
        field: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The Message-ID of what we send for `ticket`:
/// `pec-connector.{ticket}.{unique}@{domain of the account address}` (stored without brackets).
///
/// `unique` comes from the caller (the webhook dedup key, or its hash), so that a retry of one
/// send keeps its Message-ID. A `unique` that is not a short token of `A-Z a-z 0-9 . _ -` is
/// replaced by the first 32 hex digits of its SHA-256.
pub fn message_id(account: &Account, ticket: TicketId, unique: &str) -> MessageId {
    let safe = !unique.is_empty()
        && unique.len() <= 64
        && unique
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let unique = if safe {
        unique.to_owned()
    } else {
        hex(&Sha256::digest(unique.as_bytes())[..16])
    };
    let domain = account
        .address
        .as_str()
        .rsplit_once('@')
        .map_or(account.address.as_str(), |(_, d)| d);
    let id = format!("pec-connector.{ticket}.{unique}@{domain}");
    // Every part is a token without spaces, brackets or controls, well under the length limit.
    MessageId::parse(&id).expect("a Message-ID built from validated parts is valid")
}

/// Composes `msg` with the default [`ComposeLimits`].
pub fn compose(
    msg: &OutboundMessage,
    message_id: &MessageId,
    date: DateTime<Utc>,
) -> Result<Vec<u8>, ComposeError> {
    compose_with(msg, message_id, date, &ComposeLimits::default())
}

/// Composes `msg` as raw RFC 5322 bytes, refusing what could inject a header or what the
/// provider would refuse anyway.
pub fn compose_with(
    msg: &OutboundMessage,
    message_id: &MessageId,
    date: DateTime<Utc>,
    limits: &ComposeLimits,
) -> Result<Vec<u8>, ComposeError> {
    check_line("subject", &msg.subject)?;
    if msg.subject.trim().is_empty() {
        return Err(ComposeError::Empty { field: "subject" });
    }
    if msg.subject.chars().count() > MAX_SUBJECT_CHARS {
        return Err(ComposeError::SubjectTooLong {
            limit: MAX_SUBJECT_CHARS,
        });
    }
    if let Some(name) = &msg.from_name {
        check_line("sender name", name)?;
    }
    if msg.to.is_empty() {
        return Err(ComposeError::NoRecipient);
    }
    if msg.to.len() > limits.max_recipients {
        return Err(ComposeError::TooManyRecipients {
            count: msg.to.len(),
            limit: limits.max_recipients,
        });
    }
    for file in &msg.attachments {
        check_line("attachment file name", &file.filename)?;
        if file.filename.trim().is_empty() {
            return Err(ComposeError::Empty {
                field: "attachment file name",
            });
        }
        check_line("attachment content type", &file.content_type)?;
    }

    let text = match &msg.text {
        Some(t) => t.clone(),
        None => html_to_text(&msg.html),
    };
    // Refuse early what is surely too big, before encoding it (base64 adds a third).
    let estimate = msg
        .attachments
        .iter()
        .map(|f| f.data.len() / 3 * 4)
        .sum::<usize>()
        .saturating_add(msg.html.len())
        .saturating_add(text.len());
    check_size(estimate, msg.to.len(), limits)?;

    let mut builder = Message::builder()
        .from(Mailbox::new(
            msg.from_name.clone().filter(|n| !n.trim().is_empty()),
            address("sender address", &msg.from)?,
        ))
        .subject(msg.subject.clone())
        .date(SystemTime::from(date))
        .message_id(Some(format!("<{message_id}>")));
    for to in &msg.to {
        builder = builder.to(Mailbox::new(None, address("recipient address", to)?));
    }
    if let Some(id) = &msg.in_reply_to {
        builder = builder.in_reply_to(format!("<{id}>"));
    }
    if !msg.references.is_empty() {
        let refs: Vec<String> = msg.references.iter().map(|id| format!("<{id}>")).collect();
        builder = builder.references(refs.join(" "));
    }

    let seed = boundary_seed(msg, message_id, &text);
    let alternative = MultiPart::builder()
        .kind(MultiPartKind::Alternative)
        .boundary(boundary(&seed, "alt"))
        .singlepart(SinglePart::plain(text))
        .singlepart(SinglePart::html(msg.html.clone()));
    let message = if msg.attachments.is_empty() {
        builder.multipart(alternative)
    } else {
        let mut mixed = MultiPart::builder()
            .kind(MultiPartKind::Mixed)
            .boundary(boundary(&seed, "mix"))
            .multipart(alternative);
        for file in &msg.attachments {
            let content_type = ContentType::parse(&file.content_type).map_err(|_| {
                ComposeError::BadContentType {
                    filename: file.filename.clone(),
                    content_type: file.content_type.clone(),
                }
            })?;
            let body = Body::new_with_encoding(file.data.clone(), ContentTransferEncoding::Base64)
                .map_err(|_| ComposeError::Lettre {
                    field: "attachment",
                    source: "cannot encode as base64".into(),
                })?;
            mixed =
                mixed.singlepart(Attachment::new(file.filename.clone()).body(body, content_type));
        }
        builder.multipart(mixed)
    }
    .map_err(|e| ComposeError::Lettre {
        field: "message",
        source: Box::new(e),
    })?;

    let raw = message.formatted();
    check_size(raw.len(), msg.to.len(), limits)?;
    Ok(raw)
}

/// A plain-text rendering of an HTML body: tags dropped (and the content of `script`, `style`
/// and `head`), the basic entities decoded, a line break for `<br>` and block ends, a blank line
/// between paragraphs.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    while let Some(lt) = rest.find('<') {
        if skip_until.is_none() {
            push_text(&mut out, &rest[..lt]);
        }
        rest = &rest[lt..];
        let Some(gt) = rest.find('>') else {
            if skip_until.is_none() {
                push_text(&mut out, rest);
            }
            rest = "";
            break;
        };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(end) = skip_until {
            if closing && name == end {
                skip_until = None;
            }
            continue;
        }
        match name.as_str() {
            "script" | "style" | "head" | "title" if !closing => {
                skip_until = Some(match name.as_str() {
                    "script" => "script",
                    "style" => "style",
                    "head" => "head",
                    _ => "title",
                });
            }
            "br" => newline(&mut out, 1, true),
            "p" | "blockquote" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "ul" | "ol"
            | "table" => newline(&mut out, 2, false),
            "div" | "li" | "tr" | "hr" | "pre" => newline(&mut out, 1, false),
            _ => {}
        }
    }
    if skip_until.is_none() {
        push_text(&mut out, rest);
    }
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let mut text = String::with_capacity(out.len());
    let mut blank = 0;
    for line in lines {
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.trim_matches('\n').to_owned()
}

/// Text between tags: runs of white space become one space, entities are decoded.
fn push_text(out: &mut String, raw: &str) {
    let mut last_space = out.is_empty() || out.ends_with(['\n', ' ']);
    for c in decode_entities_collapsed(raw).chars() {
        if c == '\u{0}' {
            continue;
        }
        if c.is_whitespace() && c != '\u{a0}' {
            if !last_space {
                out.push(' ');
                last_space = true;
            }
        } else {
            out.push(if c == '\u{a0}' { ' ' } else { c });
            last_space = false;
        }
    }
}

/// Ends the current line; `n` = 2 leaves a blank line. A `<br>` always breaks, even twice.
fn newline(out: &mut String, n: usize, always: bool) {
    while out.ends_with(' ') {
        out.pop();
    }
    if out.is_empty() {
        return;
    }
    if always {
        out.push('\n');
        return;
    }
    let have = out.len() - out.trim_end_matches('\n').len();
    for _ in have..n {
        out.push('\n');
    }
}

/// Decodes `&amp;` `&lt;` `&gt;` `&quot;` `&apos;` `&nbsp;` (as U+00A0), `&euro;`, the Italian
/// accented vowels and `&laquo;`/`&raquo;`, and numeric references; anything else is kept as
/// written.
fn decode_entities_collapsed(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..]
            .char_indices()
            .take(10)
            .find(|(_, c)| *c == ';')
            .map(|(i, _)| i + 1);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                "euro" => Some('€'),
                "agrave" => Some('à'),
                "egrave" => Some('è'),
                "eacute" => Some('é'),
                "igrave" => Some('ì'),
                "ograve" => Some('ò'),
                "ugrave" => Some('ù'),
                "Egrave" => Some('È'),
                "laquo" => Some('«'),
                "raquo" => Some('»'),
                _ => entity
                    .strip_prefix('#')
                    .and_then(|n| match n.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => n.parse().ok(),
                    })
                    .and_then(char::from_u32)
                    .filter(|c| !c.is_control() || *c == '\n' || *c == '\t'),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Refuses a value for a header line that holds a control character (CR and LF included).
fn check_line(field: &'static str, value: &str) -> Result<(), ComposeError> {
    if value.chars().any(char::is_control) {
        return Err(ComposeError::ControlCharacter { field });
    }
    Ok(())
}

fn check_size(size: usize, recipients: usize, limits: &ComposeLimits) -> Result<(), ComposeError> {
    if size.saturating_mul(recipients) > limits.max_total_bytes {
        return Err(ComposeError::TooLarge {
            size,
            recipients,
            limit: limits.max_total_bytes,
        });
    }
    Ok(())
}

fn address(field: &'static str, addr: &PecAddress) -> Result<Address, ComposeError> {
    check_line(field, addr.as_str())?;
    addr.as_str()
        .parse::<Address>()
        .map_err(|e| ComposeError::Lettre {
            field,
            source: Box::new(e),
        })
}

/// A digest of everything that goes into the message: a boundary derived from it cannot be
/// predicted by whoever writes the content, so it cannot appear inside it.
fn boundary_seed(msg: &OutboundMessage, message_id: &MessageId, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [
        message_id.as_str(),
        msg.subject.as_str(),
        msg.html.as_str(),
        text,
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    for file in &msg.attachments {
        for part in [
            file.filename.as_bytes(),
            file.content_type.as_bytes(),
            &file.data,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.finalize().into()
}

fn boundary(seed: &[u8; 32], kind: &str) -> String {
    format!("=_{kind}_{}", hex(&seed[..16]))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{AccountId, Endpoint, PollInterval};

    fn addr(s: &str) -> PecAddress {
        PecAddress::parse(s).unwrap()
    }

    fn id(s: &str) -> MessageId {
        MessageId::parse(s).unwrap()
    }

    fn date() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 14, 9, 26, 53).unwrap()
    }

    fn account() -> Account {
        Account {
            id: AccountId::parse("comune").unwrap(),
            address: addr("protocollo@pec.comune.example.it"),
            imap: Endpoint::parse("imap", "imaps.pec.example.it", 993).unwrap(),
            smtp: Endpoint::parse("smtp", "smtps.pec.example.it", 465).unwrap(),
            username: None,
            poll_interval: PollInterval::default(),
            enabled: true,
            password_secret: "account/comune".to_owned(),
            subject_template: "{{ticket.title}}".to_owned(),
            message_template: "{{ticket.latest_comment_html}}".to_owned(),
            receipt_mode: Default::default(),
            outbound_attachments: Default::default(),
            zendesk_instance: None,
            zendesk: Default::default(),
            password_set_at: None,
            nonce: None,
            max_message_bytes: None,
            health: Default::default(),
            created_at: date(),
            updated_at: date(),
        }
    }

    fn message() -> OutboundMessage {
        OutboundMessage {
            from: addr("protocollo@pec.comune.example.it"),
            from_name: Some("Comune di Esempio — Protocollo".to_owned()),
            to: vec![addr("mario.rossi@pec.example.it"), addr("uffici@pec.ditta.it")],
            subject: "Re: Richiesta di rimborso: 12,50 € già versati".to_owned(),
            html: "<p>Gentile Sig. Rossi,</p><p>la pratica &egrave; chiusa &amp; archiviata.<br>Saluti</p>"
                .to_owned(),
            text: Some("Gentile Sig. Rossi,\n\nla pratica è chiusa & archiviata.\nSaluti".to_owned()),
            attachments: vec![
                OutboundFile {
                    filename: "perché.pdf".to_owned(),
                    content_type: "application/pdf".to_owned(),
                    data: b"%PDF-1.4\n\x00\x01\x02\xff binary".to_vec(),
                },
                OutboundFile {
                    filename: "note.txt".to_owned(),
                    content_type: "text/plain; charset=utf-8".to_owned(),
                    data: "righe\r\ndi testo €\r\n".as_bytes().to_vec(),
                },
            ],
            in_reply_to: Some(id("opec21.20260301@pec.example.it")),
            references: vec![
                id("first@mail.example.it"),
                id("opec21.20260301@pec.example.it"),
            ],
            ticket: TicketId::new(4321).unwrap(),
        }
    }

    fn original(raw: &[u8]) -> pec::OriginalMessage {
        let parsed = pec::PecMessage::parse(raw).unwrap();
        assert_eq!(parsed.kind, pec::Kind::NonPec);
        parsed
            .original
            .expect("a non-PEC message is its own original")
    }

    fn headers(raw: &[u8]) -> String {
        let raw = String::from_utf8_lossy(raw);
        raw.split("\r\n\r\n").next().unwrap().to_owned()
    }

    #[test]
    fn composes_what_the_parser_reads_back() {
        let msg = message();
        let mid = message_id(&account(), msg.ticket, "0123abcd");
        let raw = compose(&msg, &mid, date()).unwrap();
        let o = original(&raw);

        let from = o.from.as_ref().unwrap();
        assert_eq!(from.address, "protocollo@pec.comune.example.it");
        assert_eq!(from.name.as_deref(), Some("Comune di Esempio — Protocollo"));
        let to: Vec<&str> = o.to.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(to, ["mario.rossi@pec.example.it", "uffici@pec.ditta.it"]);
        assert_eq!(o.subject.as_deref(), Some(msg.subject.as_str()));
        assert_eq!(
            o.message_id.as_deref(),
            Some("pec-connector.4321.0123abcd@pec.comune.example.it")
        );
        assert_eq!(o.in_reply_to, ["opec21.20260301@pec.example.it"]);
        assert_eq!(
            o.references,
            ["first@mail.example.it", "opec21.20260301@pec.example.it"]
        );
        assert_eq!(o.date.unwrap().with_timezone(&Utc), date());
        assert_eq!(
            o.text
                .as_deref()
                .map(|t| t.replace("\r\n", "\n"))
                .as_deref(),
            msg.text.as_deref()
        );
        assert_eq!(
            o.html.as_deref().map(str::trim_end),
            Some(msg.html.as_str())
        );

        let files: Vec<(&str, &str, &[u8])> = o
            .attachments
            .iter()
            .map(|a| {
                (
                    a.filename.as_str(),
                    a.content_type.as_str(),
                    a.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            files,
            [
                (
                    "perché.pdf",
                    "application/pdf",
                    msg.attachments[0].data.as_slice()
                ),
                ("note.txt", "text/plain", msg.attachments[1].data.as_slice()),
            ]
        );
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);

        let head = headers(&raw);
        assert!(head.contains("multipart/mixed"), "{head}");
        assert!(!head.to_ascii_lowercase().contains("bcc:"), "{head}");
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("multipart/alternative"));
        assert!(text.contains("Content-Transfer-Encoding: base64"));
        assert!(raw.is_ascii(), "8-bit bytes in the message");
    }

    #[test]
    fn without_attachments_the_message_is_just_the_alternative() {
        let msg = OutboundMessage {
            attachments: vec![],
            in_reply_to: None,
            references: vec![],
            ..message()
        };
        let raw = compose(&msg, &id("x.1@pec.example.it"), date()).unwrap();
        let head = headers(&raw);
        assert!(head.contains("multipart/alternative"), "{head}");
        assert!(!String::from_utf8_lossy(&raw).contains("multipart/mixed"));
        assert!(!head.contains("In-Reply-To") && !head.contains("References"));
        let o = original(&raw);
        assert!(o.attachments.is_empty());
        assert!(o.in_reply_to.is_empty() && o.references.is_empty());
        assert!(o.text.is_some() && o.html.is_some());
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let msg = message();
        let mid = message_id(&account(), msg.ticket, "k");
        let a = compose(&msg, &mid, date()).unwrap();
        let b = compose(&msg, &mid, date()).unwrap();
        assert_eq!(a, b);

        let mut other = message();
        other.html.push_str("<p>PS</p>");
        let c = compose(&other, &mid, date()).unwrap();
        assert_ne!(boundaries(&a), boundaries(&c));
    }

    fn boundaries(raw: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(raw)
            .split("boundary=\"")
            .skip(1)
            .map(|s| s.split('"').next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn header_injection_is_refused() {
        let mid = id("x.1@pec.example.it");
        let subject = OutboundMessage {
            subject: "Oggetto\r\nBcc: x@y.it".to_owned(),
            ..message()
        };
        let err = compose(&subject, &mid, date()).unwrap_err();
        assert!(
            matches!(err, ComposeError::ControlCharacter { field: "subject" }),
            "{err}"
        );
        assert!(err.to_string().starts_with("cannot compose"), "{err}");

        for bad in [
            "Oggetto\nBcc: x@y.it",
            "Oggetto\rX",
            "tab\tin subject",
            "nul\0",
        ] {
            let m = OutboundMessage {
                subject: bad.to_owned(),
                ..message()
            };
            assert!(compose(&m, &mid, date()).is_err(), "{bad:?}");
        }

        let name = OutboundMessage {
            from_name: Some("Ufficio\r\nBcc: x@y.it".to_owned()),
            ..message()
        };
        assert!(matches!(
            compose(&name, &mid, date()),
            Err(ComposeError::ControlCharacter {
                field: "sender name"
            })
        ));

        let mut file = message();
        file.attachments[0].filename = "a.pdf\r\nBcc: x@y.it".to_owned();
        assert!(matches!(
            compose(&file, &mid, date()),
            Err(ComposeError::ControlCharacter {
                field: "attachment file name"
            })
        ));

        // Addresses with a line break never become a PecAddress in the first place.
        assert!(PecAddress::parse("a@pec.example.it\r\nBcc: x@y.it").is_err());
        assert!(PecAddress::parse("a\r\n@pec.example.it").is_err());
    }

    #[test]
    fn never_a_bcc_header() {
        let msg = message();
        let raw = compose(&msg, &id("x.1@pec.example.it"), date()).unwrap();
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(!text.contains("\nbcc:"));
    }

    #[test]
    fn recipients_and_subject_are_checked() {
        let mid = id("x.1@pec.example.it");
        let none = OutboundMessage {
            to: vec![],
            ..message()
        };
        assert!(matches!(
            compose(&none, &mid, date()),
            Err(ComposeError::NoRecipient)
        ));

        let many = OutboundMessage {
            to: (0..=MAX_RECIPIENTS)
                .map(|i| addr(&format!("r{i}@pec.example.it")))
                .collect(),
            ..message()
        };
        assert!(matches!(
            compose(&many, &mid, date()),
            Err(ComposeError::TooManyRecipients {
                count: 51,
                limit: 50
            })
        ));

        let empty = OutboundMessage {
            subject: "  ".to_owned(),
            ..message()
        };
        let err = compose(&empty, &mid, date()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot compose the PEC: the subject is empty"
        );

        let long = OutboundMessage {
            subject: "è".repeat(MAX_SUBJECT_CHARS + 1),
            ..message()
        };
        assert!(matches!(
            compose(&long, &mid, date()),
            Err(ComposeError::SubjectTooLong { .. })
        ));

        let mut bad_type = message();
        bad_type.attachments[0].content_type = "not a type".to_owned();
        assert!(matches!(
            compose(&bad_type, &mid, date()),
            Err(ComposeError::BadContentType { .. })
        ));
    }

    #[test]
    fn a_message_over_the_limit_is_refused() {
        let mid = id("x.1@pec.example.it");
        let limits = ComposeLimits {
            max_total_bytes: 100_000,
            ..ComposeLimits::default()
        };
        let mut msg = message();
        msg.attachments[0].data = vec![7; 30_000];
        // About 41 kB once encoded: fine for one recipient, too much for two or three.
        msg.to.truncate(1);
        assert!(compose_with(&msg, &mid, date(), &limits).is_ok());
        msg.to.push(addr("b@pec.example.it"));
        msg.to.push(addr("c@pec.example.it"));
        let err = compose_with(&msg, &mid, date(), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                ComposeError::TooLarge {
                    recipients: 3,
                    limit: 100_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("once per recipient"), "{err}");

        // Too big even before encoding: refused without building it.
        msg.attachments[0].data = vec![7; 200_000];
        msg.to.truncate(1);
        assert!(matches!(
            compose_with(&msg, &mid, date(), &limits),
            Err(ComposeError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_text_alternative_is_derived_from_the_html() {
        let msg = OutboundMessage {
            text: None,
            attachments: vec![],
            ..message()
        };
        let raw = compose(&msg, &id("x.1@pec.example.it"), date()).unwrap();
        let o = original(&raw);
        assert_eq!(
            o.text
                .as_deref()
                .map(|t| t.replace("\r\n", "\n"))
                .as_deref(),
            Some("Gentile Sig. Rossi,\n\nla pratica è chiusa & archiviata.\nSaluti")
        );
    }

    #[test]
    fn html_to_text_keeps_lines_and_decodes_entities() {
        assert_eq!(
            html_to_text(
                "<html><head><title>T</title><style>p{color:red}</style></head><body>\
                 <p>Gentile   cliente,\n  la  pratica</p><p>&lt;n.&nbsp;12&gt; &quot;ok&quot; &#8364; &#x20AC; &euro; &amp;amp;</p>\
                 riga 1<br>riga 2<br/><br />riga 4<div>blocco</div><script>alert(1)</script>\
                 <ul><li>uno</li><li>due</li></ul>fine &unknown; & solo</body></html>"
            ),
            "Gentile cliente, la pratica\n\n<n. 12> \"ok\" € € € &amp;\n\nriga 1\nriga 2\n\nriga 4\nblocco\n\nuno\ndue\n\nfine &unknown; & solo"
        );
        assert_eq!(html_to_text("plain text only"), "plain text only");
        assert_eq!(html_to_text(""), "");
        assert_eq!(html_to_text("a < b"), "a < b");
    }

    #[test]
    fn message_ids_are_ours_and_stable() {
        let t = TicketId::new(77).unwrap();
        let a = message_id(&account(), t, "9f86d081884c7d65");
        assert_eq!(
            a.as_str(),
            "pec-connector.77.9f86d081884c7d65@pec.comune.example.it"
        );
        assert_eq!(a, message_id(&account(), t, "9f86d081884c7d65"));
        assert_ne!(
            a,
            message_id(&account(), TicketId::new(78).unwrap(), "9f86d081884c7d65")
        );

        // A raw dedup key (spaces, colons, brackets) is hashed into a token.
        let b = message_id(&account(), t, "template:comune:77:invocation:<a b>");
        assert!(MessageId::parse(&format!("<{b}>")).is_ok());
        let unique = b.as_str().split('.').nth(2).unwrap();
        let unique = unique.split('@').next().unwrap();
        assert_eq!(unique.len(), 32);
        assert!(unique.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            b,
            message_id(&account(), t, "template:comune:77:invocation:<a b>")
        );
        assert!(
            message_id(&account(), t, "")
                .as_str()
                .starts_with("pec-connector.77.")
        );
    }
}
