//! Builds messages shaped like the ones real mail clients and PEC providers write, for test
//! fixtures and for the sandbox PEC provider.
//!
//! * [`MailBuilder`] writes an ordinary RFC 5322 message: addresses, RFC 2047 subjects, text and
//!   HTML bodies in a chosen charset and transfer encoding, attachments with RFC 2231 names,
//!   inline `cid:` parts and attached messages.
//! * [`daticert_xml`] writes `daticert.xml` as providers do (UTF-8, 4-space indent, DTD order).
//! * [`PecBuilder`] writes a provider message of any [`Kind`]: a busta di trasporto or di
//!   anomalia around an original message, or any receipt, with the provider's headers, the
//!   Italian notice (text and HTML, iso-8859-1 quoted-printable), `daticert.xml`,
//!   `postacert.eml` where the rules want it, and the S/MIME `multipart/signed` shell.
//!
//! Output is deterministic: the same inputs give the same bytes (boundaries and provider ids are
//! derived from hashes of the inputs; no clock, no randomness), so fixtures are reproducible.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, Utc};
use mailparse::{MailHeaderMap, ParsedMail};
use sha1::{Digest, Sha1};

use crate::daticert::{Daticert, Destinatario, normalize_msgid};
use crate::signature::{DigestAlgorithm, SigningIdentity, sign_detached};
use crate::{Kind, ReceiptKind};

/// Why a provider message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build a {0} message: non-pec is not a provider message (use MailBuilder)")]
    NotPec(&'static str),
    #[error("cannot build a {0} message: it needs the original message (postacert.eml)")]
    MissingOriginal(&'static str),
    #[error("cannot build a {0} message: daticert has no data (the event timestamp)")]
    MissingData(&'static str),
    #[error("cannot sign the {kind} message: {reason}")]
    Signing { kind: &'static str, reason: String },
}

// ---------------------------------------------------------------------------------------------
// Ordinary mail

/// The charset a body is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Charset {
    #[default]
    Utf8,
    /// Latin-1: characters above U+00FF become `?`.
    Iso8859_1,
    /// Windows-1252 (Latin-1 plus `€`, `…`, curly quotes, ...).
    Windows1252,
}

impl Charset {
    /// The `charset` parameter value.
    pub fn label(self) -> &'static str {
        match self {
            Charset::Utf8 => "utf-8",
            Charset::Iso8859_1 => "iso-8859-1",
            Charset::Windows1252 => "windows-1252",
        }
    }

    /// The bytes of `text` in this charset.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Iso8859_1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
            Charset::Windows1252 => encoding_rs::WINDOWS_1252.encode(text).0.into_owned(),
        }
    }
}

/// The Content-Transfer-Encoding of a text body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransferEncoding {
    #[default]
    QuotedPrintable,
    Base64,
    /// Raw bytes (lines in CRLF).
    EightBit,
    /// Raw bytes, for ASCII-only text.
    SevenBit,
}

impl TransferEncoding {
    fn label(self) -> &'static str {
        match self {
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::SevenBit => "7bit",
        }
    }

    fn encode(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            TransferEncoding::QuotedPrintable => quoted_printable(bytes).into_bytes(),
            TransferEncoding::Base64 => base64_lines(bytes, 76).into_bytes(),
            TransferEncoding::EightBit | TransferEncoding::SevenBit => crlf(bytes),
        }
    }
}

/// A display name (optional) and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: Option<String>,
    pub address: String,
}

impl Address {
    pub fn new(address: &str) -> Address {
        Address {
            name: None,
            address: address.to_owned(),
        }
    }

    pub fn named(name: &str, address: &str) -> Address {
        Address {
            name: Some(name.to_owned()),
            address: address.to_owned(),
        }
    }

    /// `Name <address>` (the name quoted or RFC 2047 encoded as needed), or the bare address.
    pub fn to_header(&self) -> String {
        match &self.name {
            Some(name) => format!("{} <{}>", phrase(name), self.address),
            None => self.address.clone(),
        }
    }
}

impl From<&str> for Address {
    fn from(address: &str) -> Address {
        Address::new(address)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileRole {
    Attachment,
    Inline,
    Message,
}

/// A file in a message: an attachment, an inline part referenced by `cid:`, or an attached
/// message (`message/rfc822`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    filename: String,
    content_type: String,
    data: Vec<u8>,
    content_id: Option<String>,
    role: FileRole,
    rfc2047_name: bool,
}

impl FilePart {
    /// An attachment (`Content-Disposition: attachment`), base64-encoded.
    pub fn attachment(filename: &str, content_type: &str, data: &[u8]) -> FilePart {
        FilePart {
            filename: filename.to_owned(),
            content_type: content_type.to_owned(),
            data: data.to_vec(),
            content_id: None,
            role: FileRole::Attachment,
            rfc2047_name: true,
        }
    }

    /// An inline part with a Content-ID (without angle brackets), placed in `multipart/related`
    /// next to the HTML body that references it as `cid:<content_id>`.
    pub fn inline(content_id: &str, filename: &str, content_type: &str, data: &[u8]) -> FilePart {
        FilePart {
            content_id: Some(normalize_msgid(content_id).to_owned()),
            role: FileRole::Inline,
            ..FilePart::attachment(filename, content_type, data)
        }
    }

    /// An attached message (a forwarded `.eml`), written as `message/rfc822`, 7bit or 8bit.
    pub fn message(filename: &str, raw: &[u8]) -> FilePart {
        FilePart {
            role: FileRole::Message,
            ..FilePart::attachment(filename, "message/rfc822", raw)
        }
    }

    /// For a non-ASCII file name, whether the Content-Type `name=` parameter is written as an
    /// RFC 2047 encoded word (as Outlook and Gmail do, the default) or as RFC 2231 `name*=`.
    /// The Content-Disposition `filename` is always RFC 2231 (`filename*=UTF-8''...`).
    pub fn rfc2047_name(mut self, yes: bool) -> FilePart {
        self.rfc2047_name = yes;
        self
    }

    fn to_part(&self) -> Part {
        let ctype_name = if self.filename.is_ascii() || !self.rfc2047_name {
            param("name", &self.filename)
        } else {
            format!(
                "name=\"{}\"",
                encode_words(&self.filename).replace("\r\n ", " ")
            )
        };
        let disposition = match self.role {
            FileRole::Inline => "inline",
            FileRole::Attachment | FileRole::Message => "attachment",
        };
        let mut headers = vec![
            (
                "Content-Type".to_owned(),
                format!("{};\r\n {}", self.content_type, ctype_name),
            ),
            (
                "Content-Disposition".to_owned(),
                format!("{disposition};\r\n {}", param("filename", &self.filename)),
            ),
        ];
        if let Some(cid) = &self.content_id {
            headers.push(("Content-ID".to_owned(), format!("<{cid}>")));
        }
        let body = match self.role {
            FileRole::Message => {
                let cte = if self.data.is_ascii() { "7bit" } else { "8bit" };
                headers.push(("Content-Transfer-Encoding".to_owned(), cte.to_owned()));
                crlf(&self.data)
            }
            FileRole::Attachment | FileRole::Inline => {
                headers.push(("Content-Transfer-Encoding".to_owned(), "base64".to_owned()));
                base64_lines(&self.data, 76).into_bytes()
            }
        };
        Part::leaf(headers, body)
    }
}

/// An ordinary RFC 5322 message, as a mail client writes it. Lines end in CRLF.
///
/// Layout: the text and/or HTML body (`multipart/alternative` when both), inside
/// `multipart/related` with the inline parts when there are any, inside `multipart/mixed` with
/// the attachments and attached messages when there are any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailBuilder {
    from: Option<Address>,
    to: Vec<Address>,
    cc: Vec<Address>,
    reply_to: Vec<Address>,
    subject: Option<String>,
    date: Option<DateTime<FixedOffset>>,
    message_id: Option<String>,
    in_reply_to: Vec<String>,
    references: Vec<String>,
    headers: Vec<(String, String)>,
    text: Option<String>,
    html: Option<String>,
    charset: Charset,
    transfer_encoding: TransferEncoding,
    files: Vec<FilePart>,
}

impl MailBuilder {
    pub fn new() -> MailBuilder {
        MailBuilder::default()
    }

    pub fn from(mut self, from: impl Into<Address>) -> MailBuilder {
        self.from = Some(from.into());
        self
    }

    pub fn to(mut self, to: impl Into<Address>) -> MailBuilder {
        self.to.push(to.into());
        self
    }

    pub fn cc(mut self, cc: impl Into<Address>) -> MailBuilder {
        self.cc.push(cc.into());
        self
    }

    pub fn reply_to(mut self, reply_to: impl Into<Address>) -> MailBuilder {
        self.reply_to.push(reply_to.into());
        self
    }

    /// The subject; non-ASCII text is written as RFC 2047 encoded words.
    pub fn subject(mut self, subject: &str) -> MailBuilder {
        self.subject = Some(subject.to_owned());
        self
    }

    pub fn date(mut self, date: DateTime<FixedOffset>) -> MailBuilder {
        self.date = Some(date);
        self
    }

    /// The Message-ID, with or without angle brackets.
    pub fn message_id(mut self, id: &str) -> MailBuilder {
        self.message_id = Some(normalize_msgid(id).to_owned());
        self
    }

    pub fn in_reply_to(mut self, id: &str) -> MailBuilder {
        self.in_reply_to.push(normalize_msgid(id).to_owned());
        self
    }

    pub fn references(mut self, id: &str) -> MailBuilder {
        self.references.push(normalize_msgid(id).to_owned());
        self
    }

    /// An extra header, written as given (the value must already be ASCII).
    pub fn header(mut self, name: &str, value: &str) -> MailBuilder {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn text(mut self, text: &str) -> MailBuilder {
        self.text = Some(text.to_owned());
        self
    }

    pub fn html(mut self, html: &str) -> MailBuilder {
        self.html = Some(html.to_owned());
        self
    }

    /// Charset of the text and HTML bodies (default UTF-8).
    pub fn charset(mut self, charset: Charset) -> MailBuilder {
        self.charset = charset;
        self
    }

    /// Transfer encoding of the text and HTML bodies (default quoted-printable).
    pub fn transfer_encoding(mut self, encoding: TransferEncoding) -> MailBuilder {
        self.transfer_encoding = encoding;
        self
    }

    /// Adds an attachment, inline part or attached message.
    pub fn file(mut self, file: FilePart) -> MailBuilder {
        self.files.push(file);
        self
    }

    pub fn attachment(self, filename: &str, content_type: &str, data: &[u8]) -> MailBuilder {
        self.file(FilePart::attachment(filename, content_type, data))
    }

    pub fn inline(
        self,
        content_id: &str,
        filename: &str,
        content_type: &str,
        data: &[u8],
    ) -> MailBuilder {
        self.file(FilePart::inline(content_id, filename, content_type, data))
    }

    pub fn attach_message(self, filename: &str, raw: &[u8]) -> MailBuilder {
        self.file(FilePart::message(filename, raw))
    }

    /// The message bytes, CRLF line endings.
    pub fn build(&self) -> Vec<u8> {
        let mut boundaries = Boundaries::new(self.seed());
        let mut body = self.body_part(&mut boundaries);
        let inline: Vec<&FilePart> = self
            .files
            .iter()
            .filter(|f| f.role == FileRole::Inline)
            .collect();
        if !inline.is_empty() {
            let mut parts = vec![body];
            parts.extend(inline.iter().map(|f| f.to_part()));
            body = Part::multipart("related", boundaries.next(), parts);
        }
        let attached: Vec<&FilePart> = self
            .files
            .iter()
            .filter(|f| f.role != FileRole::Inline)
            .collect();
        if !attached.is_empty() {
            let mut parts = vec![body];
            parts.extend(attached.iter().map(|f| f.to_part()));
            body = Part::multipart("mixed", boundaries.next(), parts);
            if let Body::Multipart { preamble, .. } = &mut body.body {
                *preamble = Some("This is a multi-part message in MIME format.\r\n".to_owned());
            }
        }

        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(date) = self.date {
            headers.push(("Date".to_owned(), date.to_rfc2822()));
        }
        if let Some(from) = &self.from {
            headers.push(("From".to_owned(), from.to_header()));
        }
        for (name, list) in [
            ("To", &self.to),
            ("Cc", &self.cc),
            ("Reply-To", &self.reply_to),
        ] {
            if !list.is_empty() {
                let value = list
                    .iter()
                    .map(Address::to_header)
                    .collect::<Vec<_>>()
                    .join(", ");
                headers.push((name.to_owned(), fold(name, &value)));
            }
        }
        if let Some(subject) = &self.subject {
            headers.push(("Subject".to_owned(), subject_value(subject)));
        }
        if let Some(id) = &self.message_id {
            headers.push(("Message-ID".to_owned(), format!("<{id}>")));
        }
        for (name, ids) in [
            ("In-Reply-To", &self.in_reply_to),
            ("References", &self.references),
        ] {
            if !ids.is_empty() {
                let value = ids
                    .iter()
                    .map(|id| format!("<{id}>"))
                    .collect::<Vec<_>>()
                    .join(" ");
                headers.push((name.to_owned(), fold(name, &value)));
            }
        }
        headers.extend(self.headers.iter().cloned());
        headers.push(("MIME-Version".to_owned(), "1.0".to_owned()));
        headers.extend(body.headers);
        let mut out = Vec::new();
        write_headers(&mut out, &headers);
        out.extend_from_slice(b"\r\n");
        write_body(&mut out, &body.body);
        out
    }

    /// The text/HTML body part (alternative when both).
    fn body_part(&self, boundaries: &mut Boundaries) -> Part {
        let leaf = |subtype: &str, text: &str| {
            let bytes = crlf(&self.charset.encode(text));
            Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        format!("text/{subtype}; charset=\"{}\"", self.charset.label()),
                    ),
                    (
                        "Content-Transfer-Encoding".to_owned(),
                        self.transfer_encoding.label().to_owned(),
                    ),
                ],
                self.transfer_encoding.encode(&bytes),
            )
        };
        match (&self.text, &self.html) {
            (Some(text), Some(html)) => Part::multipart(
                "alternative",
                boundaries.next(),
                vec![leaf("plain", text), leaf("html", html)],
            ),
            (None, Some(html)) => leaf("html", html),
            (Some(text), None) => leaf("plain", text),
            (None, None) => leaf("plain", ""),
        }
    }

    fn seed(&self) -> u64 {
        let mut h = Fnv::new();
        for s in [&self.subject, &self.message_id, &self.text, &self.html]
            .into_iter()
            .flatten()
        {
            h.write(s.as_bytes());
        }
        if let Some(from) = &self.from {
            h.write(from.address.as_bytes());
        }
        if let Some(date) = self.date {
            h.write(date.to_rfc3339().as_bytes());
        }
        for f in &self.files {
            h.write(f.filename.as_bytes());
            h.write(&f.data);
        }
        h.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// daticert.xml

/// `daticert.xml` exactly as providers write it: UTF-8 declaration, no DOCTYPE, 4-space indent,
/// LF line endings, elements in DTD order (RT §7.3.3), `<ricevuta tipo="..." />` self-closing,
/// text escaped (`<msgid>` becomes `&lt;...&gt;`). Absent optional elements are left out.
pub fn daticert_xml(d: &Daticert) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errore = if d.errore.is_empty() {
        "nessuno"
    } else {
        &d.errore
    };
    let _ = writeln!(
        x,
        "<postacert tipo=\"{}\" errore=\"{}\">",
        escape_xml(&d.tipo),
        escape_xml(errore)
    );
    x.push_str("    <intestazione>\n");
    element(
        &mut x,
        2,
        "mittente",
        d.mittente.as_deref().unwrap_or_default(),
    );
    for dest in &d.destinatari {
        let tipo = if dest.tipo.is_empty() {
            "certificato"
        } else {
            &dest.tipo
        };
        let _ = writeln!(
            x,
            "        <destinatari tipo=\"{}\">{}</destinatari>",
            escape_xml(tipo),
            escape_xml(&dest.address)
        );
    }
    element(
        &mut x,
        2,
        "risposte",
        d.risposte.as_deref().unwrap_or_default(),
    );
    if let Some(oggetto) = &d.oggetto {
        element(&mut x, 2, "oggetto", oggetto);
    }
    x.push_str("    </intestazione>\n    <dati>\n");
    if let Some(gestore) = &d.gestore_emittente {
        element(&mut x, 2, "gestore-emittente", gestore);
    }
    if let Some(data) = d.data {
        let _ = writeln!(x, "        <data zona=\"{}\">", data.format("%z"));
        element(&mut x, 3, "giorno", &data.format("%d/%m/%Y").to_string());
        element(&mut x, 3, "ora", &data.format("%H:%M:%S").to_string());
        x.push_str("        </data>\n");
    }
    if let Some(id) = &d.identificativo {
        element(&mut x, 2, "identificativo", id);
    }
    if let Some(msgid) = &d.msgid {
        element(&mut x, 2, "msgid", msgid);
    }
    if let Some(ricevuta) = &d.ricevuta {
        let _ = writeln!(x, "        <ricevuta tipo=\"{}\" />", escape_xml(ricevuta));
    }
    for c in &d.consegna {
        element(&mut x, 2, "consegna", c);
    }
    for r in &d.ricezione {
        element(&mut x, 2, "ricezione", r);
    }
    if let Some(e) = &d.errore_esteso {
        element(&mut x, 2, "errore-esteso", e);
    }
    x.push_str("    </dati>\n</postacert>\n");
    x
}

fn element(x: &mut String, depth: usize, name: &str, text: &str) {
    let _ = writeln!(
        x,
        "{:width$}<{name}>{}</{name}>",
        "",
        escape_xml(text),
        width = depth * 4
    );
}

fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// The certification facts a provider reads from an original message: `mittente` (From),
/// `destinatari` (To and Cc, all `certificato`), `risposte` (Reply-To, else From), `oggetto`,
/// `msgid` (the client Message-ID, with angle brackets) and `ricevuta` (`X-TipoRicevuta`).
/// The caller fills in `tipo`, `data`, `identificativo` and the receipt-specific elements.
pub fn daticert_from_original(raw: &[u8]) -> Daticert {
    let mut d = Daticert {
        errore: "nessuno".to_owned(),
        ..Daticert::default()
    };
    let Ok((headers, _)) = mailparse::parse_headers(raw) else {
        return d;
    };
    let first = |name: &str| -> Vec<String> {
        headers
            .get_all_headers(name)
            .iter()
            .filter_map(|h| mailparse::addrparse_header(h).ok())
            .flat_map(|list| list.into_inner())
            .flat_map(|a| match a {
                mailparse::MailAddr::Single(s) => vec![s.addr],
                mailparse::MailAddr::Group(g) => g.addrs.into_iter().map(|s| s.addr).collect(),
            })
            .collect()
    };
    d.mittente = first("From").into_iter().next();
    d.destinatari = first("To")
        .into_iter()
        .chain(first("Cc"))
        .map(|address| Destinatario {
            address,
            tipo: "certificato".to_owned(),
        })
        .collect();
    d.risposte = first("Reply-To")
        .into_iter()
        .next()
        .or_else(|| d.mittente.clone());
    d.oggetto = headers
        .get_first_value("Subject")
        .map(|s| s.trim().to_owned());
    d.msgid = headers
        .get_first_value("Message-ID")
        .map(|id| format!("<{}>", normalize_msgid(&id)));
    d.ricevuta = headers
        .get_first_value("X-TipoRicevuta")
        .map(|t| crate::TipoRicevuta::from_value(&t).as_str().to_owned());
    d
}

// ---------------------------------------------------------------------------------------------
// Provider messages

/// A PEC provider (gestore): its name (daticert `gestore-emittente`) and its mail domain
/// (`posta-certificata@<domain>` signs and sends its messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub domain: String,
}

impl Provider {
    pub fn new(name: &str, domain: &str) -> Provider {
        Provider {
            name: name.to_owned(),
            domain: domain.to_owned(),
        }
    }

    /// `posta-certificata@<domain>`.
    pub fn address(&self) -> String {
        format!("posta-certificata@{}", self.domain)
    }
}

/// Line endings of the written message. The signature is always computed over the CRLF form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    #[default]
    Crlf,
    /// As tools that store mail as files often write it.
    Lf,
}

/// How `daticert.xml` is transfer-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DaticertEncoding {
    /// base64 in 60-character lines, as every provider in the sample set writes it.
    #[default]
    Base64,
    /// The XML as text (`7bit`, or `8bit` when it has non-ASCII characters).
    Plain,
}

/// The S/MIME shell of a provider message.
#[derive(Debug, Clone, Default)]
pub enum SignatureMode {
    /// No `multipart/signed` at all: the top-level message is the `multipart/mixed`.
    None,
    /// `multipart/signed` whose only part is the signed content (no `smime.p7s`).
    WithoutP7s,
    /// A fake `smime.p7s` (`MII...njA==`), as anonymised samples carry.
    #[default]
    Placeholder,
    /// A real detached CMS signature by this identity (SHA-256, `micalg="sha-256"`), over the
    /// exact CRLF bytes of the signed part, with signingTime = the message Date.
    Sign(Box<SigningIdentity>),
}

impl SignatureMode {
    /// [`SignatureMode::Sign`] with this identity.
    pub fn signed_by(identity: SigningIdentity) -> SignatureMode {
        SignatureMode::Sign(Box::new(identity))
    }
}

/// A mailing-list copy: the provider message becomes the first part of an outer
/// `multipart/mixed` with the same top-level headers, and the list adds a footer part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCopy {
    /// Prepended to the Subject, e.g. `[pec-users]`.
    pub subject_tag: Option<String>,
    /// Headers the list adds (List-Id, ...), written after the copied ones.
    pub headers: Vec<(String, String)>,
    /// The footer text (ASCII).
    pub footer: String,
}

/// How the message is written (all independent of its content).
#[derive(Debug, Clone, Default)]
pub struct PecOptions {
    pub line_ending: LineEnding,
    /// Write the top-level header names in lower case (`x-trasporto: ...`).
    pub lowercase_headers: bool,
    pub daticert_encoding: DaticertEncoding,
    pub signature: SignatureMode,
    pub list_copy: Option<ListCopy>,
    /// Headers written first in the top-level header block (Received, Delivered-To, ...).
    pub headers: Vec<(String, String)>,
}

/// A message as a PEC provider writes it: a busta di trasporto ([`Kind::Envelope`]), a busta di
/// anomalia ([`Kind::Anomaly`]) or a receipt ([`Kind::Receipt`]).
///
/// The certification facts come from the [`Daticert`] (see [`daticert_from_original`]); the
/// builder sets its `tipo` from the kind and its `gestore_emittente` from the provider when
/// empty. `data` is required. The avvenuta-consegna variant is `daticert.ricevuta`
/// (`completa` when absent).
///
/// `postacert.eml` is written for envelopes, anomalies and avvenuta-consegna completa and breve
/// (pec-format §2). For envelopes and consegna receipts the original's Message-ID is replaced by
/// the identificativo and `X-Riferimento-Message-ID` is added, as the sender's provider does;
/// an anomaly keeps the message as received. In a *breve* receipt every attachment of the
/// original is replaced by a `text/plain` part with the same file name holding the SHA-1 hash
/// of its content (the RT says "attachments replaced by their hashes"; the exact shape is not
/// seen in public samples).
#[derive(Debug, Clone)]
pub struct PecBuilder {
    kind: Kind,
    provider: Provider,
    daticert: Daticert,
    original: Option<Vec<u8>>,
    message_id: Option<String>,
    date: Option<DateTime<FixedOffset>>,
    to: Vec<Address>,
    virus: bool,
    options: PecOptions,
}

impl PecBuilder {
    pub fn new(kind: Kind, provider: Provider, daticert: Daticert) -> PecBuilder {
        PecBuilder {
            kind,
            provider,
            daticert,
            original: None,
            message_id: None,
            date: None,
            to: Vec::new(),
            virus: false,
            options: PecOptions::default(),
        }
    }

    /// The original message (wrapped as `postacert.eml` where the kind carries it).
    pub fn original(mut self, raw: &[u8]) -> PecBuilder {
        self.original = Some(raw.to_vec());
        self
    }

    /// The receipt's own Message-ID (default: derived from the identificativo, distinct per
    /// kind and recipient). Envelopes always use the identificativo.
    pub fn message_id(mut self, id: &str) -> PecBuilder {
        self.message_id = Some(normalize_msgid(id).to_owned());
        self
    }

    /// The Date header (default: daticert `data`).
    pub fn date(mut self, date: DateTime<FixedOffset>) -> PecBuilder {
        self.date = Some(date);
        self
    }

    /// The top-level To of a receipt (default: the original sender, daticert `mittente`).
    pub fn to(mut self, to: impl Into<Address>) -> PecBuilder {
        self.to.push(to.into());
        self
    }

    /// A virus notice: `X-VerificaSicurezza: errore`, the "PER VIRUS" subject prefix, and
    /// daticert `errore="virus"` unless another error is set.
    pub fn virus(mut self, virus: bool) -> PecBuilder {
        self.virus = virus;
        self
    }

    pub fn options(mut self, options: PecOptions) -> PecBuilder {
        self.options = options;
        self
    }

    pub fn line_ending(mut self, line_ending: LineEnding) -> PecBuilder {
        self.options.line_ending = line_ending;
        self
    }

    pub fn lowercase_headers(mut self, yes: bool) -> PecBuilder {
        self.options.lowercase_headers = yes;
        self
    }

    pub fn daticert_encoding(mut self, encoding: DaticertEncoding) -> PecBuilder {
        self.options.daticert_encoding = encoding;
        self
    }

    pub fn signature(mut self, signature: SignatureMode) -> PecBuilder {
        self.options.signature = signature;
        self
    }

    pub fn list_copy(mut self, list_copy: ListCopy) -> PecBuilder {
        self.options.list_copy = Some(list_copy);
        self
    }

    /// A header written first in the top-level block.
    pub fn header(mut self, name: &str, value: &str) -> PecBuilder {
        self.options
            .headers
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// The certification data as written into `daticert.xml`.
    pub fn effective_daticert(&self) -> Daticert {
        let mut d = self.daticert.clone();
        d.tipo = match self.kind {
            Kind::Envelope | Kind::Anomaly | Kind::NonPec => "posta-certificata".to_owned(),
            Kind::Receipt(r) => r.as_str().to_owned(),
        };
        if d.gestore_emittente.is_none() {
            d.gestore_emittente = Some(self.provider.name.clone());
        }
        if d.errore.is_empty() || (self.virus && d.errore == "nessuno") {
            d.errore = if self.virus { "virus" } else { "nessuno" }.to_owned();
        }
        d
    }

    /// Whether this message carries `postacert.eml` (pec-format §2).
    pub fn has_postacert(&self) -> bool {
        match self.kind {
            Kind::Envelope | Kind::Anomaly => true,
            Kind::Receipt(ReceiptKind::AvvenutaConsegna) => self.variant() != "sintetica",
            _ => false,
        }
    }

    fn variant(&self) -> &'static str {
        crate::TipoRicevuta::from_value(self.daticert.ricevuta.as_deref().unwrap_or("completa"))
            .as_str()
    }

    /// The message bytes.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        let kind = self.kind.as_str();
        if self.kind == Kind::NonPec {
            return Err(BuildError::NotPec(kind));
        }
        let d = self.effective_daticert();
        let data = d.data.ok_or(BuildError::MissingData(kind))?;
        let postacert = if self.has_postacert() {
            let raw = self
                .original
                .as_deref()
                .ok_or(BuildError::MissingOriginal(kind))?;
            let raw = crlf(raw);
            Some(match self.kind {
                Kind::Anomaly => raw,
                _ => {
                    let id = d.identificativo.as_deref().unwrap_or_default();
                    let rewritten = replace_message_id(&raw, id, d.msgid.as_deref());
                    if self.kind == Kind::Receipt(ReceiptKind::AvvenutaConsegna)
                        && self.variant() == "breve"
                    {
                        replace_attachments_with_hashes(&rewritten)
                    } else {
                        rewritten
                    }
                }
            })
        } else {
            None
        };

        let mut seed = Fnv::new();
        seed.write(kind.as_bytes());
        seed.write(d.identificativo.as_deref().unwrap_or_default().as_bytes());
        for c in d.consegna.iter().chain(&d.ricezione) {
            seed.write(c.as_bytes());
        }
        seed.write(data.to_rfc3339().as_bytes());
        let seed = seed.finish();
        let mut boundaries = ProviderBoundaries::new(data.timestamp(), seed);

        // The signed content: multipart/mixed (notice, daticert.xml, postacert.eml).
        let notice = Notice::new(self.kind, self.virus, &d, self.variant());
        let mixed_boundary = boundaries.next();
        let alternative = Part::multipart(
            "alternative",
            boundaries.next(),
            vec![
                Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/plain; charset=\"iso-8859-1\"".to_owned(),
                        ),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                        (
                            "Content-Transfer-Encoding".to_owned(),
                            "quoted-printable".to_owned(),
                        ),
                    ],
                    quoted_printable(&crlf(&Charset::Iso8859_1.encode(&notice.text))).into_bytes(),
                ),
                Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/html; charset=\"iso-8859-1\"".to_owned(),
                        ),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                        (
                            "Content-Transfer-Encoding".to_owned(),
                            "quoted-printable".to_owned(),
                        ),
                    ],
                    quoted_printable(&crlf(&Charset::Iso8859_1.encode(&notice.html))).into_bytes(),
                ),
            ],
        );
        let xml = daticert_xml(&d);
        let (xml_cte, xml_body) = match self.options.daticert_encoding {
            DaticertEncoding::Base64 => ("base64", base64_lines(xml.as_bytes(), 60).into_bytes()),
            DaticertEncoding::Plain => (
                if xml.is_ascii() { "7bit" } else { "8bit" },
                crlf(xml.as_bytes()),
            ),
        };
        let mut parts = vec![
            alternative,
            Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        "application/xml; name=\"daticert.xml\"".to_owned(),
                    ),
                    (
                        "Content-Disposition".to_owned(),
                        "inline; filename=\"daticert.xml\"".to_owned(),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), xml_cte.to_owned()),
                ],
                xml_body,
            ),
        ];
        if let Some(postacert) = postacert {
            let cte = if postacert.is_ascii() { "7bit" } else { "8bit" };
            parts.push(Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        "message/rfc822; name=\"postacert.eml\"".to_owned(),
                    ),
                    (
                        "Content-Disposition".to_owned(),
                        "inline; filename=\"postacert.eml\"".to_owned(),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), cte.to_owned()),
                ],
                postacert,
            ));
        }
        let mut mixed = Part::multipart("mixed", mixed_boundary, parts);
        // Providers fold the alternative's Content-Type but not the mixed one.
        mixed.headers[0].1 = mixed.headers[0].1.replace(";\r\n ", "; ");
        mixed
            .headers
            .push(("Content-Transfer-Encoding".to_owned(), "binary".to_owned()));
        let signed_mime_version = self.options.signature_is_signed();
        if signed_mime_version {
            mixed
                .headers
                .push(("MIME-Version".to_owned(), "1.0".to_owned()));
        }
        if let Body::Multipart { parts, .. } = &mut mixed.body {
            if let Some(alt) = parts.first_mut() {
                alt.headers
                    .push(("Content-Transfer-Encoding".to_owned(), "binary".to_owned()));
            }
        }
        let signed_content = mixed.render();

        // The entity the top-level headers describe.
        let entity = self.sign(&signed_content, seed, self.date.unwrap_or(data))?;

        let mut headers = self.top_headers(&d, data)?;
        let mut out = Vec::new();
        match &self.options.list_copy {
            None => {
                headers.push(("MIME-Version".to_owned(), "1.0".to_owned()));
                headers.extend(entity.headers.iter().cloned());
                if let SignatureMode::None = self.options.signature {
                } else if let Some(pos) = headers.iter().position(|(n, _)| n == "Message-ID") {
                    // Providers write Message-ID last, after Content-Type.
                    let id = headers.remove(pos);
                    headers.push(id);
                }
                self.write_top_headers(&mut out, &headers);
                out.extend_from_slice(b"\r\n");
                write_body(&mut out, &entity.body);
            }
            Some(list) => {
                if let Some(tag) = &list.subject_tag {
                    for (name, value) in headers.iter_mut() {
                        if name == "Subject" {
                            *value = format!("{tag} {value}");
                        }
                    }
                }
                headers.extend(list.headers.iter().cloned());
                headers.push(("MIME-Version".to_owned(), "1.0".to_owned()));
                let mut first = entity;
                if !first.headers.iter().any(|(n, _)| n == "MIME-Version") {
                    first
                        .headers
                        .push(("MIME-Version".to_owned(), "1.0".to_owned()));
                }
                let footer = Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/plain; charset=\"us-ascii\"".to_owned(),
                        ),
                        ("MIME-Version".to_owned(), "1.0".to_owned()),
                        ("Content-Transfer-Encoding".to_owned(), "7bit".to_owned()),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                    ],
                    crlf(list.footer.as_bytes()),
                );
                let boundary =
                    format!("==============={:019}==", seed % 10_000_000_000_000_000_000);
                let wrapper = Part::multipart("mixed", boundary, vec![first, footer]);
                headers.extend(wrapper.headers.iter().cloned());
                self.write_top_headers(&mut out, &headers);
                out.extend_from_slice(b"\r\n");
                write_body(&mut out, &wrapper.body);
            }
        }
        Ok(match self.options.line_ending {
            LineEnding::Crlf => out,
            LineEnding::Lf => to_lf(&out),
        })
    }

    /// Wraps the signed content in the S/MIME shell chosen by the options.
    fn sign(
        &self,
        content: &[u8],
        seed: u64,
        signing_time: DateTime<FixedOffset>,
    ) -> Result<Part, BuildError> {
        // Real signatures use SHA-256 and the RFC 5751 names (as the 2021 go-pec samples); the
        // unsigned shells look like the Aruba/Sogei ones (SHA-1, `x-pkcs7-signature`).
        let (protocol, micalg) = match &self.options.signature {
            SignatureMode::Sign(_) => (
                "application/pkcs7-signature",
                DigestAlgorithm::Sha256.micalg(),
            ),
            _ => ("application/x-pkcs7-signature", "sha1"),
        };
        let p7s = |body: Vec<u8>| {
            Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        format!("{protocol}; name=\"smime.p7s\""),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), "base64".to_owned()),
                    (
                        "Content-Disposition".to_owned(),
                        "attachment; filename=\"smime.p7s\"".to_owned(),
                    ),
                ],
                body,
            )
        };
        let p7s = match &self.options.signature {
            SignatureMode::None => {
                // The mixed entity itself: split its rendered form back into headers and body.
                return Ok(Part::rendered_entity(content));
            }
            SignatureMode::WithoutP7s => None,
            SignatureMode::Placeholder => Some(p7s(b"MII...njA==\r\n".to_vec())),
            SignatureMode::Sign(identity) => {
                let der = sign_detached(content, identity, signing_time.with_timezone(&Utc))
                    .map_err(|e| BuildError::Signing {
                        kind: self.kind.as_str(),
                        reason: e.to_string(),
                    })?;
                Some(p7s(base64_lines(&der, 64).into_bytes()))
            }
        };
        let digest = Sha1::new()
            .chain_update(content)
            .chain_update(seed.to_be_bytes())
            .finalize();
        let mut boundary = String::from("----");
        for b in &digest[..16] {
            let _ = write!(boundary, "{b:02X}");
        }
        let mut parts = vec![Part::raw(content.to_vec())];
        parts.extend(p7s);
        let mut part = Part::multipart("signed", boundary.clone(), parts);
        part.headers[0].1 = format!(
            "multipart/signed; protocol=\"{protocol}\"; micalg=\"{micalg}\"; boundary=\"{boundary}\""
        );
        if let Body::Multipart { preamble, .. } = &mut part.body {
            *preamble = Some("This is an S/MIME signed message\r\n".to_owned());
        }
        Ok(part)
    }

    /// The provider's top-level headers (pec-format §3), in the order providers write them;
    /// MIME headers are added by the caller.
    fn top_headers(
        &self,
        d: &Daticert,
        data: DateTime<FixedOffset>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let mut h: Vec<(String, String)> = self.options.headers.clone();
        let prefix = crate::subject::prefix(self.kind, self.virus, false).unwrap_or_default();
        let subject = format!("{prefix}{}", d.oggetto.as_deref().unwrap_or_default());
        h.push(("Subject".to_owned(), subject_value(&subject)));
        if let Some(msgid) = &d.msgid {
            h.push((
                "X-Riferimento-Message-ID".to_owned(),
                format!("<{}>", normalize_msgid(msgid)),
            ));
        }
        let date = self.date.unwrap_or(data).to_rfc2822();
        h.push(("Date".to_owned(), date));
        let identificativo = d.identificativo.clone().unwrap_or_default();
        match self.kind {
            Kind::Envelope | Kind::Anomaly => {
                let mittente = d.mittente.clone().unwrap_or_default();
                if let Some(risposte) = &d.risposte {
                    h.push(("Reply-To".to_owned(), risposte.clone()));
                }
                let (to, cc) = self.original_recipients(d);
                if !to.is_empty() {
                    h.push(("To".to_owned(), to));
                }
                if !cc.is_empty() {
                    h.push(("Cc".to_owned(), cc));
                }
                let trasporto = if self.kind == Kind::Envelope {
                    "posta-certificata"
                } else {
                    "errore"
                };
                h.push(("X-Trasporto".to_owned(), trasporto.to_owned()));
                h.push((
                    "From".to_owned(),
                    format!(
                        "\"Per conto di: {}\" <{}>",
                        mittente.replace('"', ""),
                        self.provider.address()
                    ),
                ));
                if let (Kind::Envelope, Some(tipo)) = (self.kind, &d.ricevuta) {
                    h.push(("X-TipoRicevuta".to_owned(), tipo.clone()));
                }
                h.push(("Message-ID".to_owned(), format!("<{identificativo}>")));
            }
            Kind::Receipt(r) => {
                let id = self
                    .message_id
                    .clone()
                    .unwrap_or_else(|| self.receipt_id(d, r));
                h.push(("Message-ID".to_owned(), format!("<{id}>")));
                let to = if self.to.is_empty() {
                    d.mittente.clone().unwrap_or_default()
                } else {
                    self.to
                        .iter()
                        .map(Address::to_header)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                h.push(("To".to_owned(), fold("To", &to)));
                h.push(("X-Ricevuta".to_owned(), r.as_str().to_owned()));
                if self.virus {
                    h.push(("X-VerificaSicurezza".to_owned(), "errore".to_owned()));
                }
                h.push(("From".to_owned(), self.provider.address()));
            }
            Kind::NonPec => return Err(BuildError::NotPec(self.kind.as_str())),
        }
        Ok(h)
    }

    /// To and Cc of an envelope: the original's, as written; else the daticert destinatari.
    fn original_recipients(&self, d: &Daticert) -> (String, String) {
        let from_original = self.original.as_deref().and_then(|raw| {
            let (headers, _) = mailparse::parse_headers(raw).ok()?;
            let raw_value = |name: &str| {
                headers
                    .get_first_header(name)
                    .map(|h| String::from_utf8_lossy(h.get_value_raw()).trim().to_owned())
                    .unwrap_or_default()
            };
            Some((raw_value("To"), raw_value("Cc")))
        });
        match from_original {
            Some((to, cc)) if !to.is_empty() || !cc.is_empty() => (crlf_str(&to), crlf_str(&cc)),
            _ => {
                let all: Vec<&str> = d.destinatari.iter().map(|x| x.address.as_str()).collect();
                (fold("To", &all.join(", ")), String::new())
            }
        }
    }

    /// A receipt's own id: the identificativo with a number derived from the kind and the
    /// recipient inserted before its last component (Aruba: `...1.63@` → `...1.358.63@`).
    fn receipt_id(&self, d: &Daticert, kind: ReceiptKind) -> String {
        let identificativo = d.identificativo.as_deref().unwrap_or("pec");
        let local = identificativo.split('@').next().unwrap_or(identificativo);
        let mut h = Fnv::new();
        h.write(kind.as_str().as_bytes());
        for c in d.consegna.iter().chain(&d.ricezione) {
            h.write(c.as_bytes());
        }
        let n = h.finish() % 900_000 + 100_000;
        match local.rsplit_once('.') {
            Some((head, last)) => format!("{head}.{n}.{last}@{}", self.provider.domain),
            None => format!("{local}.{n}@{}", self.provider.domain),
        }
    }

    fn write_top_headers(&self, out: &mut Vec<u8>, headers: &[(String, String)]) {
        if self.options.lowercase_headers {
            let lower: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            write_headers(out, &lower);
        } else {
            write_headers(out, headers);
        }
    }
}

impl PecOptions {
    fn signature_is_signed(&self) -> bool {
        !matches!(self.signature, SignatureMode::None)
    }
}

/// The human-readable notice of a provider message (text and HTML), in Italian.
struct Notice {
    text: String,
    html: String,
}

impl Notice {
    fn new(kind: Kind, virus: bool, d: &Daticert, variant: &str) -> Notice {
        let (giorno, ora, zona) = match d.data {
            Some(t) => (
                t.format("%d/%m/%Y").to_string(),
                t.format("%H:%M:%S").to_string(),
                t.format("%z").to_string(),
            ),
            None => Default::default(),
        };
        let quando = format!("Il giorno {giorno} alle ore {ora} ({zona})");
        let oggetto = d.oggetto.clone().unwrap_or_default();
        let mittente = d.mittente.clone().unwrap_or_default();
        let id = d.identificativo.clone().unwrap_or_default();
        let destinatari: Vec<String> = d
            .destinatari
            .iter()
            .map(|x| {
                let tipo = if x.tipo == "esterno" {
                    "posta ordinaria"
                } else {
                    "posta certificata"
                };
                format!("{} (\"{tipo}\")", x.address)
            })
            .collect();
        let consegna = d.consegna.join(", ");
        let errore = d
            .errore_esteso
            .clone()
            .unwrap_or_else(|| match d.errore.as_str() {
                "virus" => "virus informatico rilevato".to_owned(),
                "no-dest" => "destinatario non valido".to_owned(),
                "no-dominio" => "dominio non valido".to_owned(),
                _ => "errore non specificato".to_owned(),
            });
        let gestore = d.gestore_emittente.clone().unwrap_or_default();
        let lista = destinatari.join("\n");
        let (title, body): (&str, String) = match kind {
            Kind::Envelope | Kind::NonPec => (
                "Messaggio di posta certificata",
                format!(
                    "{quando} il messaggio\n\"{oggetto}\" è stato inviato da \"{mittente}\"\n\
                     indirizzato a:\n{lista}\n\nIl messaggio originale è incluso in allegato."
                ),
            ),
            Kind::Anomaly => (
                "Anomalia nel messaggio",
                format!(
                    "{quando} è stato ricevuto il messaggio\n\"{oggetto}\" proveniente da \
                     \"{mittente}\"\nindirizzato a:\n{lista}\n\nIl messaggio non è un messaggio di \
                     posta certificata valido: viene consegnato\nall'interno di una busta di anomalia. \
                     Il messaggio originale è incluso in allegato."
                ),
            ),
            Kind::Receipt(r) => match r {
                ReceiptKind::Accettazione => (
                    "Ricevuta di accettazione",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nè stato accettato dal sistema ed inoltrato."
                    ),
                ),
                ReceiptKind::NonAccettazione if virus => (
                    "Avviso di non accettazione per virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nè stato rilevato un problema di sicurezza: \
                         {errore}.\nIl messaggio non è stato accettato dal sistema."
                    ),
                ),
                ReceiptKind::NonAccettazione => (
                    "Avviso di non accettazione",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nnon è stato accettato dal sistema per il \
                         seguente errore:\n{errore}\nIl messaggio non è stato inoltrato."
                    ),
                ),
                ReceiptKind::PresaInCarico => (
                    "Ricevuta di presa in carico",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{}\nè stato preso in carico dal gestore {gestore}.",
                        if d.ricezione.is_empty() {
                            lista.clone()
                        } else {
                            d.ricezione.join("\n")
                        }
                    ),
                ),
                ReceiptKind::AvvenutaConsegna => (
                    "Ricevuta di avvenuta consegna",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a \"{consegna}\"\nè stato consegnato nella casella di \
                         destinazione.{}",
                        match variant {
                            "breve" =>
                                "\nIl messaggio originale è incluso in allegato; i suoi \
                                        allegati sono sostituiti\ndai rispettivi hash.",
                            "sintetica" => "",
                            _ => "\nIl messaggio originale è incluso in allegato.",
                        }
                    ),
                ),
                ReceiptKind::ErroreConsegna if virus => (
                    "Avviso di mancata consegna per virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato un virus: \
                         {errore}.\nIl messaggio non è stato consegnato."
                    ),
                ),
                ReceiptKind::ErroreConsegna => (
                    "Avviso di mancata consegna",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato il seguente \
                         errore:\n{errore}\nIl messaggio non è stato consegnato."
                    ),
                ),
                ReceiptKind::PreavvisoErroreConsegna => (
                    "Avviso di mancata consegna per superamento dei tempi massimi",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nnon risulta ancora consegnato: \
                         entro le prime 12 ore dall'invio\nnon è pervenuta la ricevuta di avvenuta \
                         consegna.\nIl messaggio potrebbe essere consegnato in seguito."
                    ),
                ),
                ReceiptKind::RilevazioneVirus => (
                    "Avviso di rilevazione virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato un virus: {errore}.\n\
                         Il messaggio non verrà consegnato."
                    ),
                ),
            },
        };
        let footer = format!("Identificativo messaggio: {id}");
        let text = format!(
            "{title}\n\n  -----\n\n{body}\n{footer}\nL'allegato daticert.xml contiene informazioni di \
             servizio sulla trasmissione\n"
        );
        let html_body = html_escape(&body).replace('\n', "<br>\n");
        let html = format!(
            "<html>\n<head><title>{t}</title></head>\n<body>\n<h3>{t}</h3>\n<hr><br>\n{html_body}<br>\n\
             {f}<br>\n</body>\n</html>\n",
            t = html_escape(title),
            f = html_escape(&footer),
        );
        Notice { text, html }
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            'à' => out.push_str("&agrave;"),
            'è' => out.push_str("&egrave;"),
            'é' => out.push_str("&eacute;"),
            'ì' => out.push_str("&igrave;"),
            'ò' => out.push_str("&ograve;"),
            'ù' => out.push_str("&ugrave;"),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
        }
    }
    out
}

/// Replaces the original's Message-ID by `<identificativo>` and sets `X-Riferimento-Message-ID`
/// to the client's id, as the sender's provider does (pec-format §3.2). Input is CRLF.
fn replace_message_id(raw: &[u8], identificativo: &str, msgid: Option<&str>) -> Vec<u8> {
    let (head, rest) = split_header_block(raw);
    let mut out = Vec::with_capacity(raw.len() + 200);
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            skipping = name == "message-id" || name == "x-riferimento-message-id";
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Message-ID: <{identificativo}>\r\n").as_bytes());
    if let Some(msgid) = msgid {
        out.extend_from_slice(
            format!("X-Riferimento-Message-ID: <{}>\r\n", normalize_msgid(msgid)).as_bytes(),
        );
    }
    out.extend_from_slice(rest);
    out
}

/// Splits a CRLF message into its header lines (without the blank line) and the rest (the
/// blank line and the body).
fn split_header_block(raw: &[u8]) -> (&[u8], &[u8]) {
    if raw.starts_with(b"\r\n") {
        return (&[], raw);
    }
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&raw[..i + 2], &raw[i + 2..]),
        None => (raw, &[]),
    }
}

/// The *breve* form of an original: each attachment (a leaf part with a file name, or an
/// attached message) becomes a `text/plain` part with the same file name whose content is
/// `SHA-1: <hex digest of the decoded content>`.
fn replace_attachments_with_hashes(raw: &[u8]) -> Vec<u8> {
    let Ok(mail) = mailparse::parse_mail(raw) else {
        return raw.to_vec();
    };
    let mut spans: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    collect_attachment_spans(&mail, raw, true, &mut spans);
    spans.sort_by_key(|s| s.0);
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (start, end, replacement) in spans {
        if start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

fn collect_attachment_spans(
    part: &ParsedMail<'_>,
    raw: &[u8],
    top: bool,
    out: &mut Vec<(usize, usize, Vec<u8>)>,
) {
    let mime = part.ctype.mimetype.to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        for sub in &part.subparts {
            collect_attachment_spans(sub, raw, false, out);
        }
        return;
    }
    if top {
        return;
    }
    let disposition = part.get_content_disposition();
    let filename = disposition
        .params
        .get("filename")
        .or_else(|| part.ctype.params.get("name"))
        .cloned();
    let is_attachment = mime == "message/rfc822"
        || filename.is_some()
        || disposition.disposition == mailparse::DispositionType::Attachment;
    if !is_attachment {
        return;
    }
    let start = (part.raw_bytes.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let end = start + part.raw_bytes.len();
    if end > raw.len() {
        return;
    }
    let content = part.get_body_raw().unwrap_or_default();
    let mut hex = String::new();
    for b in Sha1::digest(&content) {
        let _ = write!(hex, "{b:02x}");
    }
    let name = filename.unwrap_or_else(|| "allegato".to_owned());
    let mut replacement = Vec::new();
    write_headers(
        &mut replacement,
        &[
            (
                "Content-Type".to_owned(),
                format!(
                    "text/plain; charset=\"us-ascii\";\r\n {}",
                    param("name", &name)
                ),
            ),
            (
                "Content-Disposition".to_owned(),
                format!("attachment;\r\n {}", param("filename", &name)),
            ),
            ("Content-Transfer-Encoding".to_owned(), "7bit".to_owned()),
        ],
    );
    replacement.extend_from_slice(format!("\r\nSHA-1: {hex}\r\n").as_bytes());
    out.push((start, end, replacement));
}

// ---------------------------------------------------------------------------------------------
// MIME writing

#[derive(Debug, Clone)]
struct Part {
    headers: Vec<(String, String)>,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    /// A whole entity already rendered (headers, blank line, body): written as is.
    Raw(Vec<u8>),
    Multipart {
        boundary: String,
        preamble: Option<String>,
        parts: Vec<Part>,
    },
}

impl Part {
    fn leaf(headers: Vec<(String, String)>, body: Vec<u8>) -> Part {
        Part {
            headers,
            body: Body::Bytes(body),
        }
    }

    fn raw(entity: Vec<u8>) -> Part {
        Part {
            headers: Vec::new(),
            body: Body::Raw(entity),
        }
    }

    /// A rendered entity split back into header fields and body.
    fn rendered_entity(entity: &[u8]) -> Part {
        let (head, rest) = split_header_block(entity);
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split_inclusive(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(line);
            let line = line.strip_suffix("\r\n").unwrap_or(&line);
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push_str("\r\n");
                    last.1.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        let body = rest.strip_prefix(b"\r\n").unwrap_or(rest).to_vec();
        Part::leaf(headers, body)
    }

    fn multipart(subtype: &str, boundary: String, parts: Vec<Part>) -> Part {
        Part {
            headers: vec![(
                "Content-Type".to_owned(),
                format!("multipart/{subtype};\r\n boundary=\"{boundary}\""),
            )],
            body: Body::Multipart {
                boundary,
                preamble: None,
                parts,
            },
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_part(&mut out, self);
        out
    }
}

fn write_part(out: &mut Vec<u8>, part: &Part) {
    if let Body::Raw(entity) = &part.body {
        out.extend_from_slice(entity);
        return;
    }
    write_headers(out, &part.headers);
    out.extend_from_slice(b"\r\n");
    write_body(out, &part.body);
}

/// A multipart body: each part is `--boundary CRLF entity`, separated by CRLF (the CRLF before a
/// boundary belongs to the delimiter, RFC 2046 §5.1.1), closed by `CRLF --boundary-- CRLF`.
fn write_body(out: &mut Vec<u8>, body: &Body) {
    match body {
        Body::Bytes(bytes) | Body::Raw(bytes) => out.extend_from_slice(bytes),
        Body::Multipart {
            boundary,
            preamble,
            parts,
        } => {
            if let Some(preamble) = preamble {
                out.extend_from_slice(preamble.as_bytes());
            }
            for (i, part) in parts.iter().enumerate() {
                if i > 0 || preamble.is_some() {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
                write_part(out, part);
            }
            out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        }
    }
}

fn write_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Boundaries of ordinary mail: `----=_Part_<n>_<seed>`.
struct Boundaries {
    seed: u64,
    n: u32,
}

impl Boundaries {
    fn new(seed: u64) -> Boundaries {
        Boundaries { seed, n: 0 }
    }

    fn next(&mut self) -> String {
        self.n += 1;
        format!("----=_Part_{}_{:016x}", self.n, self.seed)
    }
}

/// Boundaries of provider messages, in the shape shared by Aruba, Sogei and Namirial:
/// `----------=_<unix time>-<process>-<counter>`.
struct ProviderBoundaries {
    time: i64,
    process: u64,
    counter: u64,
}

impl ProviderBoundaries {
    fn new(time: i64, seed: u64) -> ProviderBoundaries {
        ProviderBoundaries {
            time,
            process: seed % 90_000 + 10_000,
            counter: (seed >> 20) % 9_000 + 100,
        }
    }

    fn next(&mut self) -> String {
        self.counter += 1;
        format!(
            "----------=_{}-{}-{}",
            self.time, self.process, self.counter
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Encodings

/// FNV-1a, 64 bits: a stable hash for boundaries and ids (std's hasher is not stable).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates fields: ("ab", "c") and ("a", "bc") hash differently.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Line endings normalised to CRLF (lone LF and lone CR become CRLF).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' => {
                out.extend_from_slice(b"\r\n");
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn crlf_str(s: &str) -> String {
    String::from_utf8_lossy(&crlf(s.as_bytes())).into_owned()
}

/// CRLF → LF.
fn to_lf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// base64 in lines of `width` characters, each ending in CRLF.
fn base64_lines(data: &[u8], width: usize) -> String {
    let encoded = BASE64.encode(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / width * 2 + 2);
    let mut start = 0;
    while start < encoded.len() {
        let end = (start + width).min(encoded.len());
        out.push_str(&encoded[start..end]);
        out.push_str("\r\n");
        start = end;
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7) of CRLF text: CRLF stays a hard line break, lines are
/// soft-broken at 76 characters, trailing blanks and non-printable bytes are `=XX`.
fn quoted_printable(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 11 / 10);
    let lines: Vec<&[u8]> = split_crlf(data);
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let mut column = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal =
                (b == b' ' || b == b'\t') && !last || (33..=126).contains(&b) && b != b'=';
            let token = if literal {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            let limit = if last { 76 } else { 75 };
            if column + token.len() > limit {
                out.push_str("=\r\n");
                column = 0;
            }
            out.push_str(&token);
            column += token.len();
        }
    }
    out
}

fn split_crlf(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == b'\r' && data[i + 1] == b'\n' {
            lines.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    lines.push(&data[start..]);
    lines
}

/// A Subject value: as is when printable ASCII; else the leading ASCII words stay plain (a
/// provider prefix like `POSTA CERTIFICATA:` stays readable) and the rest becomes RFC 2047
/// encoded words.
fn subject_value(subject: &str) -> String {
    let printable = |s: &str| s.chars().all(|c| (' '..='~').contains(&c)) && !s.contains("=?");
    if printable(subject) {
        return fold("Subject", subject);
    }
    let first_special = subject
        .find(|c: char| !(' '..='~').contains(&c))
        .unwrap_or(0);
    match subject[..first_special].rfind(' ') {
        Some(space) if printable(&subject[..space]) => {
            format!(
                "{}\r\n {}",
                &subject[..space],
                encode_words(&subject[space + 1..])
            )
        }
        _ => encode_words(subject),
    }
}

/// RFC 2047 `Q` encoded words (UTF-8), at most 75 characters each, joined by folding white
/// space (which decoders drop between adjacent encoded words).
fn encode_words(text: &str) -> String {
    const OVERHEAD: usize = "=?UTF-8?Q??=".len();
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        let mut piece = String::new();
        if c.is_ascii_alphanumeric() || "!*+-/".contains(c) {
            piece.push(c);
        } else if c == ' ' {
            piece.push('_');
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(piece, "={b:02X}");
            }
        }
        if current.len() + piece.len() + OVERHEAD > 75 {
            words.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    if !current.is_empty() || words.is_empty() {
        words.push(current);
    }
    words
        .iter()
        .map(|w| format!("=?UTF-8?Q?{w}?="))
        .collect::<Vec<_>>()
        .join("\r\n ")
}

/// A display name: as is when it is atoms, quoted when it has specials, RFC 2047 when not ASCII.
fn phrase(name: &str) -> String {
    if !name.is_ascii() {
        return encode_words(name);
    }
    let atom = |c: char| c.is_ascii_alphanumeric() || " !#$%&'*+-/=?^_`{|}~".contains(c);
    if name.chars().all(atom) && !name.contains("=?") {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// A MIME parameter: `name="value"` for ASCII, RFC 2231 `name*=UTF-8''...` otherwise (split
/// into `name*0*`, `name*1*`, ... continuations when long).
fn param(name: &str, value: &str) -> String {
    if value.is_ascii() && !value.chars().any(|c| c.is_ascii_control()) {
        return format!(
            "{name}=\"{}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    let mut encoded = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    let full = format!("UTF-8''{encoded}");
    if full.len() <= 60 {
        return format!("{name}*={full}");
    }
    // Continuations, never splitting a %XX triplet.
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        let mut piece = c.to_string();
        if c == '%' {
            piece.extend(chars.next());
            piece.extend(chars.next());
        }
        if current.len() + piece.len() > 50 {
            segments.push(std::mem::take(&mut current));
        }
        current.push_str(&piece);
    }
    segments.push(current);
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{name}*{i}*={s}"))
        .collect::<Vec<_>>()
        .join(";\r\n ")
}

/// Folds a header value at spaces so lines stay within 78 characters.
fn fold(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut column = name.len() + 2;
    for (i, word) in value.split(' ').enumerate() {
        if i > 0 {
            if column + 1 + word.len() > 78 {
                out.push_str("\r\n ");
                column = 1;
            } else {
                out.push(' ');
                column += 1;
            }
        }
        out.push_str(word);
        column += word.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn when() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2018, 11, 13, 16, 39, 27)
            .unwrap()
    }

    #[test]
    fn daticert_xml_matches_the_aruba_layout() {
        let d = Daticert {
            tipo: "avvenuta-consegna".into(),
            errore: "nessuno".into(),
            mittente: Some("l.battistini@pec.it".into()),
            destinatari: vec![Destinatario { address: "l.battistini@pec.it".into(), tipo: "certificato".into() }],
            risposte: Some("l.battistini@pec.it".into()),
            oggetto: Some("IT03339130126_00009.xml".into()),
            gestore_emittente: Some("ARUBA PEC S.p.A.".into()),
            data: Some(when()),
            identificativo: Some("opec288.20181113163926.01838.310.1.63@pec.aruba.it".into()),
            msgid: Some("<1542123565.921546936035156.464602125997431-openerp-8-fatturapa.attachment.out@elbati-Vostro-3550>".into()),
            ricevuta: Some("completa".into()),
            consegna: vec!["l.battistini@pec.it".into()],
            ricezione: vec![],
            errore_esteso: None,
        };
        // The base64 daticert.xml of pec-samples/oca-aruba-avvenuta-consegna.eml, decoded.
        let aruba = "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPHBvc3RhY2VydCB0aXBvPSJhdnZlbnV0YS1jb25zZWduYSIgZXJyb3JlPSJuZXNzdW5vIj4KICAgIDxpbnRlc3RhemlvbmU+CiAgICAgICAgPG1pdHRlbnRlPmwuYmF0dGlzdGluaUBwZWMuaXQ8L21pdHRlbnRlPgogICAgICAgIDxkZXN0aW5hdGFyaSB0aXBvPSJjZXJ0aWZpY2F0byI+bC5iYXR0aXN0aW5pQHBlYy5pdDwvZGVzdGluYXRhcmk+CiAgICAgICAgPHJpc3Bvc3RlPmwuYmF0dGlzdGluaUBwZWMuaXQ8L3Jpc3Bvc3RlPgogICAgICAgIDxvZ2dldHRvPklUMDMzMzkxMzAxMjZfMDAwMDkueG1sPC9vZ2dldHRvPgogICAgPC9pbnRlc3RhemlvbmU+CiAgICA8ZGF0aT4KICAgICAgICA8Z2VzdG9yZS1lbWl0dGVudGU+QVJVQkEgUEVDIFMucC5BLjwvZ2VzdG9yZS1lbWl0dGVudGU+CiAgICAgICAgPGRhdGEgem9uYT0iKzAxMDAiPgogICAgICAgICAgICA8Z2lvcm5vPjEzLzExLzIwMTg8L2dpb3Jubz4KICAgICAgICAgICAgPG9yYT4xNjozOToyNzwvb3JhPgogICAgICAgIDwvZGF0YT4KICAgICAgICA8aWRlbnRpZmljYXRpdm8+b3BlYzI4OC4yMDE4MTExMzE2MzkyNi4wMTgzOC4zMTAuMS42M0BwZWMuYXJ1YmEuaXQ8L2lkZW50aWZpY2F0aXZvPgogICAgICAgIDxtc2dpZD4mbHQ7MTU0MjEyMzU2NS45MjE1NDY5MzYwMzUxNTYuNDY0NjAyMTI1OTk3NDMxLW9wZW5lcnAtOC1mYXR0dXJhcGEuYXR0YWNobWVudC5vdXRAZWxiYXRpLVZvc3Ryby0zNTUwJmd0OzwvbXNnaWQ+CiAgICAgICAgPHJpY2V2dXRhIHRpcG89ImNvbXBsZXRhIiAvPgogICAgICAgIDxjb25zZWduYT5sLmJhdHRpc3RpbmlAcGVjLml0PC9jb25zZWduYT4KICAgIDwvZGF0aT4KPC9wb3N0YWNlcnQ+Cg==";
        let expected = String::from_utf8(BASE64.decode(aruba).unwrap()).unwrap();
        assert_eq!(daticert_xml(&d), expected);
        assert_eq!(Daticert::parse(daticert_xml(&d).as_bytes()).unwrap(), d);
    }

    #[test]
    fn quoted_printable_wraps_and_escapes() {
        let qp = quoted_printable(&crlf(
            &Charset::Iso8859_1.encode(&format!("è {}\nfine ", "x".repeat(80))),
        ));
        assert!(qp.starts_with("=E8 xxx"));
        assert!(
            qp.lines().all(|l| l.trim_end_matches('\r').len() <= 76),
            "{qp}"
        );
        assert!(qp.ends_with("fine=20"));
    }

    #[test]
    fn encoded_words_and_rfc2231_params() {
        assert_eq!(encode_words("perché"), "=?UTF-8?Q?perch=C3=A9?=");
        assert_eq!(
            param("filename", "fattura perché.pdf"),
            "filename*=UTF-8''fattura%20perch%C3%A9.pdf"
        );
        assert_eq!(param("filename", "a.pdf"), "filename=\"a.pdf\"");
        let long = param("filename", &"é".repeat(40));
        assert!(long.starts_with("filename*0*=UTF-8''%C3%A9"), "{long}");
        assert!(long.contains(";\r\n filename*1*=%C3%A9"), "{long}");
    }

    #[test]
    fn mail_builder_is_deterministic_and_readable_by_mailparse() {
        let build = || {
            MailBuilder::new()
                .from(Address::named("Mario Rossi", "mario@pec.example.it"))
                .to("ufficio@pec.example.it")
                .subject("Fattura perché € 10")
                .date(when())
                .message_id("abc@example.it")
                .text("Buongiorno,\nin allegato.")
                .html("<p>Buongiorno</p>")
                .attachment("fattura perché.pdf", "application/pdf", b"%PDF-1.4 test")
                .build()
        };
        let raw = build();
        assert_eq!(raw, build());
        let mail = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(
            mail.headers.get_first_value("Subject").unwrap(),
            "Fattura perché € 10"
        );
        assert_eq!(mail.subparts.len(), 2);
        let pdf = &mail.subparts[1];
        assert_eq!(
            pdf.get_content_disposition().params["filename"],
            "fattura perché.pdf"
        );
        assert_eq!(pdf.get_body_raw().unwrap(), b"%PDF-1.4 test");
    }

    #[test]
    fn subjects_keep_a_plain_ascii_prefix() {
        assert_eq!(
            subject_value("POSTA CERTIFICATA: Qualità"),
            "POSTA CERTIFICATA:\r\n =?UTF-8?Q?Qualit=C3=A0?="
        );
        assert_eq!(subject_value("Perché"), "=?UTF-8?Q?Perch=C3=A9?=");
        let raw = format!(
            "Subject: {}\r\n\r\n",
            subject_value("POSTA CERTIFICATA: Fattura – perché")
        );
        let (headers, _) = mailparse::parse_headers(raw.as_bytes()).unwrap();
        assert_eq!(
            headers.get_first_value("Subject").unwrap(),
            "POSTA CERTIFICATA: Fattura – perché"
        );
    }

    #[test]
    fn daticert_facts_come_from_the_original_headers() {
        let raw = MailBuilder::new()
            .from(Address::named("Mario Rossi", "mario@pec.x.it"))
            .to("a@pec.y.it")
            .cc(Address::named("B", "b@y.it"))
            .subject("Qualità")
            .message_id("<client.1@x.it>")
            .in_reply_to("prev@x.it")
            .references("root@x.it")
            .header("X-TipoRicevuta", "breve")
            .text("t")
            .build();
        let d = daticert_from_original(&raw);
        assert_eq!(d.mittente.as_deref(), Some("mario@pec.x.it"));
        let dest: Vec<&str> = d.destinatari.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(dest, ["a@pec.y.it", "b@y.it"]);
        assert_eq!(d.risposte.as_deref(), Some("mario@pec.x.it"));
        assert_eq!(d.oggetto.as_deref(), Some("Qualità"));
        assert_eq!(d.msgid.as_deref(), Some("<client.1@x.it>"));
        assert_eq!(d.ricevuta.as_deref(), Some("breve"));
        let (headers, _) = mailparse::parse_headers(&raw).unwrap();
        assert_eq!(
            headers.get_first_value("In-Reply-To").unwrap(),
            "<prev@x.it>"
        );
        assert_eq!(
            headers.get_first_value("References").unwrap(),
            "<root@x.it>"
        );
    }

    #[test]
    fn provider_messages_are_deterministic_and_complete() {
        let original = MailBuilder::new()
            .from("mario@pec.x.it")
            .to("a@pec.y.it")
            .subject("Prova")
            .message_id("c.1@x.it")
            .text("t")
            .attachment("f.pdf", "application/pdf", b"PDF")
            .build();
        let mut d = daticert_from_original(&original);
        d.data = Some(when());
        d.identificativo = Some("opec.1.2@pec.x.it".into());
        d.consegna = vec!["a@pec.y.it".into()];
        let provider = Provider::new("X PEC", "pec.y.it");
        let build = |kind, ricevuta: &str| {
            let mut d = d.clone();
            d.ricevuta = Some(ricevuta.to_owned());
            PecBuilder::new(kind, provider.clone(), d)
                .original(&original)
                .build()
                .unwrap()
        };
        let consegna = Kind::Receipt(ReceiptKind::AvvenutaConsegna);
        assert_eq!(build(consegna, "completa"), build(consegna, "completa"));
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let completa = text(build(consegna, "completa"));
        assert!(completa.contains("X-Ricevuta: avvenuta-consegna\r\n"));
        assert!(completa.contains("Subject: CONSEGNA: Prova\r\n"));
        assert!(completa.contains("From: posta-certificata@pec.y.it\r\n"));
        assert!(completa.contains("name=\"postacert.eml\""));
        assert!(
            completa.contains(
                "Message-ID: <opec.1.2@pec.x.it>\r\nX-Riferimento-Message-ID: <c.1@x.it>"
            )
        );
        assert!(!text(build(consegna, "sintetica")).contains("postacert.eml"));
        assert!(text(build(consegna, "breve")).contains("SHA-1: "));
        let envelope = text(build(Kind::Envelope, "breve"));
        assert!(
            envelope
                .contains("From: \"Per conto di: mario@pec.x.it\" <posta-certificata@pec.y.it>")
        );
        assert!(envelope.contains("X-TipoRicevuta: breve\r\n"));
        assert!(!envelope.contains("SHA-1: "));
        let missing = PecBuilder::new(Kind::Envelope, provider.clone(), d.clone()).build();
        assert!(matches!(missing, Err(BuildError::MissingOriginal(_))));
        assert!(PecBuilder::new(Kind::NonPec, provider, d).build().is_err());
    }

    #[test]
    fn breve_replaces_attachments_and_keeps_bodies() {
        let raw = MailBuilder::new()
            .from("a@x.it")
            .to("b@y.it")
            .subject("s")
            .text("corpo")
            .attachment("f.pdf", "application/pdf", b"PDF")
            .build();
        let breve = replace_attachments_with_hashes(&raw);
        let mail = mailparse::parse_mail(&breve).unwrap();
        assert_eq!(mail.subparts[0].get_body().unwrap(), "corpo");
        let hashed = &mail.subparts[1];
        assert_eq!(hashed.ctype.mimetype, "text/plain");
        assert_eq!(hashed.get_content_disposition().params["filename"], "f.pdf");
        let body = hashed.get_body().unwrap();
        assert!(body.starts_with("SHA-1: "), "{body}");
        assert_eq!(body.trim_end().len(), "SHA-1: ".len() + 40);
    }

    #[test]
    fn message_id_is_replaced_by_the_identificativo() {
        let raw = b"From: a@x.it\r\nMessage-ID:\r\n <client@x.it>\r\nSubject: s\r\n\r\nbody\r\n";
        let out = replace_message_id(raw, "opec.1@pec.x.it", Some("<client@x.it>"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: a@x.it\r\nSubject: s\r\nMessage-ID: <opec.1@pec.x.it>\r\n\
             X-Riferimento-Message-ID: <client@x.it>\r\n\r\nbody\r\n"
        );
    }
}
