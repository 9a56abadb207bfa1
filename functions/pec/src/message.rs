//! The original message: what a human sent. For a PEC envelope it is `postacert.eml`; for
//! ordinary mail, the message itself. Addresses, subject (RFC 2047 decoded), date, message ids,
//! text and HTML bodies (charset decoded), and attachments (RFC 2231 / RFC 2047 names, inline
//! `cid:` parts, attached messages, which can be opened with [`Attachment::as_message`]).

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use mailparse::{MailHeaderMap, ParsedMail};
use serde::Serialize;

use crate::mime;
use crate::parse::{Limits, ParseError};
use crate::text;

/// A display name and an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// One attachment (or inline part) of the original message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The file name as the sender gave it (decoded), or a generated one (`allegato-2.pdf`).
    pub filename: String,
    /// Whether `filename` was generated because the part had none.
    pub generated_name: bool,
    /// Lower-case MIME type, e.g. `application/pdf`, `message/rfc822`.
    pub content_type: String,
    /// Content-ID without angle brackets, for `cid:` references in the HTML body.
    pub content_id: Option<String>,
    /// Shown inline (Content-Disposition inline with a Content-ID, e.g. an image in the HTML).
    pub inline: bool,
    /// The decoded bytes.
    #[serde(skip)]
    pub data: Vec<u8>,
}

impl Attachment {
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// Whether the attachment is an e-mail message (`message/rfc822`, `.eml`).
    pub fn is_message(&self) -> bool {
        self.content_type == "message/rfc822" || self.content_type == "message/global"
    }

    /// Opens an attached message (a forwarded `.eml`, a nested PEC) as an original message.
    pub fn as_message(&self) -> Result<OriginalMessage, ParseError> {
        OriginalMessage::parse(&self.data, &Limits::default())
    }
}

/// The original message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OriginalMessage {
    pub from: Option<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: Option<String>,
    pub date: Option<DateTime<FixedOffset>>,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// In-Reply-To ids, without angle brackets.
    pub in_reply_to: Vec<String>,
    /// References ids, without angle brackets.
    pub references: Vec<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// Parts that could not be decoded cleanly (kept raw), and similar notes.
    pub warnings: Vec<String>,
}

impl OriginalMessage {
    /// Parses raw message bytes as an original message.
    pub fn parse(raw: &[u8], limits: &Limits) -> Result<OriginalMessage, ParseError> {
        limits.check_size(raw.len())?;
        limits.check_encoded_words(raw)?;
        let mail = mailparse::parse_mail(raw).map_err(|e| ParseError::Mime(e.to_string()))?;
        Ok(OriginalMessage::from_parsed(&mail, limits))
    }

    pub(crate) fn from_parsed(mail: &ParsedMail<'_>, limits: &Limits) -> OriginalMessage {
        let mut msg = OriginalMessage {
            from: mailboxes(mail, "From").into_iter().next(),
            reply_to: mailboxes(mail, "Reply-To"),
            to: mailboxes(mail, "To"),
            cc: mailboxes(mail, "Cc"),
            subject: mail.headers.get_first_value("Subject").map(|s| unfold(&s)),
            date: mime::header(mail, "Date").and_then(|d| parse_date(&d)),
            message_id: mime::header(mail, "Message-ID")
                .and_then(|v| msgids(&v).into_iter().next()),
            in_reply_to: mime::header(mail, "In-Reply-To")
                .map(|v| msgids(&v))
                .unwrap_or_default(),
            references: mime::header(mail, "References")
                .map(|v| msgids(&v))
                .unwrap_or_default(),
            ..OriginalMessage::default()
        };
        let mut walker = Walker {
            msg: &mut msg,
            parts: 0,
            limits,
        };
        walker.walk(mail);
        msg
    }

    /// Sender's address, if any.
    pub fn sender(&self) -> Option<&str> {
        self.from.as_ref().map(|m| m.address.as_str())
    }

    /// To + Cc addresses.
    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .map(|m| m.address.clone())
            .collect()
    }
}

struct Walker<'m, 'l> {
    msg: &'m mut OriginalMessage,
    parts: usize,
    limits: &'l Limits,
}

impl Walker<'_, '_> {
    fn walk(&mut self, part: &ParsedMail<'_>) {
        self.parts += 1;
        if self.parts > self.limits.max_parts {
            if self.parts == self.limits.max_parts + 1 {
                self.msg.warnings.push(format!(
                    "more than {} MIME parts: the rest is not read",
                    self.limits.max_parts
                ));
            }
            return;
        }
        let mimetype = mime::mimetype(part);
        if mimetype.starts_with("multipart/") {
            for sub in &part.subparts {
                self.walk(sub);
            }
            return;
        }
        let filename = mime::filename(part);
        let disposition_attachment = mime::is_attachment_disposition(part);
        if filename.is_none() && !disposition_attachment && !mimetype.starts_with("message/") {
            if (mimetype == "text/plain"
                || mimetype == "text/x-plain"
                || part.ctype.mimetype.is_empty())
                && self.msg.text.is_none()
            {
                self.msg.text = Some(self.decode_text(part));
                return;
            }
            if mimetype == "text/html" && self.msg.html.is_none() {
                self.msg.html = Some(self.decode_text(part));
                return;
            }
        }
        let data = self.decode_bytes(part);
        let content_id = mime::header(part, "Content-ID").map(|v| mime::strip_angle(&v).to_owned());
        let inline = content_id.is_some() && !disposition_attachment;
        let (filename, generated_name) = match filename {
            Some(name) => (name, false),
            None => (
                generated_name(self.msg.attachments.len() + 1, &mimetype),
                true,
            ),
        };
        self.msg.attachments.push(Attachment {
            filename,
            generated_name,
            content_type: mimetype,
            content_id,
            inline,
            data,
        });
    }

    fn decode_bytes(&mut self, part: &ParsedMail<'_>) -> Vec<u8> {
        match mime::decoded_body(part) {
            Ok(bytes) => bytes.into_owned(),
            Err((e, raw)) => {
                self.msg.warnings.push(format!(
                    "cannot decode a {} part ({e}): kept as received",
                    mime::mimetype(part)
                ));
                raw.to_vec()
            }
        }
    }

    fn decode_text(&mut self, part: &ParsedMail<'_>) -> String {
        let bytes = self.decode_bytes(part);
        text::decode(&bytes, &part.ctype.charset)
    }
}

fn generated_name(n: usize, mimetype: &str) -> String {
    let ext = match mimetype {
        "message/rfc822" | "message/global" => "eml",
        "text/plain" => "txt",
        "text/html" => "html",
        "application/pdf" => "pdf",
        "application/xml" | "text/xml" => "xml",
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "message/delivery-status" => "txt",
        "text/rfc822-headers" => "txt",
        _ => "bin",
    };
    format!("allegato-{n}.{ext}")
}

/// Unfolds a header value: folded whitespace becomes one space.
fn unfold(value: &str) -> String {
    value
        .split(['\r', '\n'])
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("")
        .trim()
        .to_owned()
}

/// The mailboxes of an address header; lenient: a value that is not a valid address list still
/// gives the addresses it contains.
pub(crate) fn mailboxes(mail: &ParsedMail<'_>, name: &str) -> Vec<Mailbox> {
    let Some(header) = mail.headers.get_first_header(name) else {
        return Vec::new();
    };
    match mailparse::addrparse_header(header) {
        Ok(list) => {
            let mut out = Vec::new();
            for addr in list.iter() {
                match addr {
                    mailparse::MailAddr::Single(s) => push_mailbox(&mut out, s),
                    mailparse::MailAddr::Group(g) => {
                        for s in &g.addrs {
                            push_mailbox(&mut out, s);
                        }
                    }
                }
            }
            out
        }
        Err(_) => scan_addresses(&header.get_value()),
    }
}

fn push_mailbox(out: &mut Vec<Mailbox>, s: &mailparse::SingleInfo) {
    let address = s.addr.trim().to_owned();
    if address.is_empty() {
        return;
    }
    let name = s
        .display_name
        .as_ref()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    out.push(Mailbox { name, address });
}

/// Finds `something@domain` tokens in free text.
fn scan_addresses(value: &str) -> Vec<Mailbox> {
    value
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '"' | '(' | ')'))
        .filter(|t| t.contains('@') && t.len() > 2)
        .map(|t| Mailbox {
            name: None,
            address: t.to_owned(),
        })
        .collect()
}

/// Message ids of a Message-ID / In-Reply-To / References header, without angle brackets.
pub(crate) fn msgids(value: &str) -> Vec<String> {
    let ids: Vec<String> = match mailparse::msgidparse(value) {
        Ok(list) => list.iter().map(|s| s.trim().to_owned()).collect(),
        Err(_) => Vec::new(),
    };
    let ids: Vec<String> = ids.into_iter().filter(|s| !s.is_empty()).collect();
    if !ids.is_empty() {
        return ids;
    }
    value
        .split_whitespace()
        .map(|t| mime::strip_angle(t).to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// An RFC 5322 date with its zone; falls back to mailparse's lenient parser (UTC).
pub(crate) fn parse_date(value: &str) -> Option<DateTime<FixedOffset>> {
    let v = value.trim();
    let cleaned = match v.find('(') {
        Some(i) => v[..i].trim(),
        None => v,
    };
    if let Ok(d) = DateTime::parse_from_rfc2822(cleaned) {
        return Some(d);
    }
    let ts = mailparse::dateparse(v).ok()?;
    Utc.timestamp_opt(ts, 0).single().map(|d| d.fixed_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> OriginalMessage {
        OriginalMessage::parse(raw.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn reads_headers_bodies_and_attachments() {
        let m = parse(concat!(
            "From: =?UTF-8?Q?Mario_Ros=C3=AC?= <mario@pec.example.it>\r\n",
            "To: uffici@pec.comune.example.it, Anna <anna@example.it>\r\n",
            "Cc: cc@example.it\r\n",
            "Subject: =?UTF-8?B?UmljaGllc3RhIGRpIGFjY2Vzc28=?=\r\n",
            "Date: Tue, 13 Nov 2018 16:39:25 +0100\r\n",
            "Message-ID: <abc@x>\r\n",
            "In-Reply-To: <prev@y>\r\n",
            "References: <first@z> <prev@y>\r\n",
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
            "--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n",
            "--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nperch=E9\r\n",
            "--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>perch\u{e9}</p>\r\n",
            "--b2--\r\n",
            "--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''fattura%20perch%C3%A9.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n",
            "--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n",
            "--b1--\r\n",
        ));
        assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("Mario Rosì"));
        assert_eq!(m.sender(), Some("mario@pec.example.it"));
        assert_eq!(
            m.recipients(),
            vec![
                "uffici@pec.comune.example.it",
                "anna@example.it",
                "cc@example.it"
            ]
        );
        assert_eq!(m.subject.as_deref(), Some("Richiesta di accesso"));
        assert_eq!(m.date.unwrap().to_rfc3339(), "2018-11-13T16:39:25+01:00");
        assert_eq!(m.message_id.as_deref(), Some("abc@x"));
        assert_eq!(m.in_reply_to, vec!["prev@y"]);
        assert_eq!(m.references, vec!["first@z", "prev@y"]);
        assert_eq!(m.text.as_deref().map(str::trim), Some("perché"));
        assert_eq!(m.html.as_deref().map(str::trim), Some("<p>perché</p>"));
        assert_eq!(m.attachments.len(), 2);
        assert_eq!(m.attachments[0].filename, "fattura perché.pdf");
        assert_eq!(m.attachments[0].data, b"%PDF-");
        assert!(!m.attachments[0].generated_name);
        assert_eq!(m.attachments[1].filename, "allegato-2.bin");
        assert!(m.attachments[1].generated_name);
        assert_eq!(m.attachments[1].data, vec![0, 1, 2]);
    }

    #[test]
    fn a_broken_address_header_still_yields_its_addresses() {
        let m = parse(
            "From: \"Per conto di: a@b.it\" <posta-certificata@pec.x.it\r\nTo: ,,x@y.it;\r\n\r\nbody",
        );
        assert!(m.sender().is_some());
        assert_eq!(m.recipients(), vec!["x@y.it"]);
    }
}
