//! Ordinary mail: addresses, charsets, transfer encodings, file parts and [`MailBuilder`].

use super::*;

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
    pub(super) fn label(self) -> &'static str {
        match self {
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::SevenBit => "7bit",
        }
    }

    pub(super) fn encode(self, bytes: &[u8]) -> Vec<u8> {
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
pub(super) enum FileRole {
    Attachment,
    Inline,
    Message,
}

/// A file in a message: an attachment, an inline part referenced by `cid:`, or an attached
/// message (`message/rfc822`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePart {
    pub(super) filename: String,
    pub(super) content_type: String,
    pub(super) data: Vec<u8>,
    pub(super) content_id: Option<String>,
    pub(super) role: FileRole,
    pub(super) rfc2047_name: bool,
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

    pub(super) fn to_part(&self) -> Part {
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
    pub(super) from: Option<Address>,
    pub(super) to: Vec<Address>,
    pub(super) cc: Vec<Address>,
    pub(super) reply_to: Vec<Address>,
    pub(super) subject: Option<String>,
    pub(super) date: Option<DateTime<FixedOffset>>,
    pub(super) message_id: Option<String>,
    pub(super) in_reply_to: Vec<String>,
    pub(super) references: Vec<String>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) charset: Charset,
    pub(super) transfer_encoding: TransferEncoding,
    pub(super) files: Vec<FilePart>,
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
    pub(super) fn body_part(&self, boundaries: &mut Boundaries) -> Part {
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

    pub(super) fn seed(&self) -> u64 {
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
