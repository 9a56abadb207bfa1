//! What FETCH says about a message's MIME structure: `ENVELOPE`, `BODY` / `BODYSTRUCTURE`, and the
//! octets of numbered parts (`BODY[2]`, `BODY[3.HEADER]`, `BODY[1.MIME]`, ...), RFC 3501 §6.4.5
//! and §7.4.2.
//!
//! `mailparse` finds the multipart tree; everything that goes on the wire (header values, Content-*
//! parameters, part octets) is cut from the stored bytes as they are: nothing is decoded or
//! re-encoded, so RFC 2047 encoded words and RFC 2231 parameters reach the client raw, as real
//! servers send them. Parsing is lenient and never fails: what cannot be understood becomes a
//! `text/plain` part (a multipart without a readable boundary, an unparseable message), a header
//! that cannot be split into addresses gives fewer addresses.
//!
//! Choices where RFC 3501 leaves room (the first three as Dovecot answers):
//! - a part number that does not exist (or `HEADER` / `TEXT` of a part that is not
//!   `message/rfc822`) gives an empty string, not an error;
//! - `BODYSTRUCTURE` always carries the full extension data (MD5 is always NIL; disposition,
//!   language and location NIL when the part has no such header);
//! - an address without a domain gets the host `MISSING_DOMAIN` (a NIL host means a group);
//! - line counts are the number of LF in the encoded body;
//! - a message/rfc822 part in base64 or quoted-printable is not opened (its octets are not a
//!   message until decoded) and shows as application/octet-stream, since `"message" "rfc822"`
//!   must be followed by an envelope and a structure.

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData,
    SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{AString, IString, Literal, NString, NonEmptyVec};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::{Part, Section};

use super::{field_value, header_fields, select_fields};

/// How deep `message/rfc822` parts are opened (below, a carried message is one text/plain part).
const MAX_MESSAGE_DEPTH: usize = 16;

// ----- strings -----

/// An IMAP string with exactly these bytes: quoted when it can be, a literal otherwise (a NUL,
/// which no IMAP4rev1 string can carry, becomes a space).
fn istring(bytes: &[u8]) -> IString<'static> {
    let bytes: Vec<u8> = bytes
        .iter()
        .map(|b| if *b == 0 { b' ' } else { *b })
        .collect();
    IString::try_from(bytes.clone())
        .unwrap_or_else(|_| IString::Literal(Literal::unvalidated(bytes)))
}

fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_blank(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_blank(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// A header value unfolded (CR and LF dropped, the folding white space kept) and trimmed.
fn unfold(value: &[u8]) -> Vec<u8> {
    trim(value)
        .iter()
        .copied()
        .filter(|b| *b != b'\r' && *b != b'\n')
        .collect()
}

/// The unfolded value of the first `name` field of a header.
fn header_value(header: &[u8], name: &str) -> Option<Vec<u8>> {
    header_fields(header)
        .into_iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, field)| unfold(field_value(field)))
}

/// Where a header (with the blank line that ends it) stops: after the first empty line, or at the
/// end when there is none (then everything is header, as Dovecot has it).
pub(super) fn header_end(raw: &[u8]) -> usize {
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(raw.len(), |i| start + i + 1);
        if matches!(&raw[start..end], b"\n" | b"\r\n") {
            return end;
        }
        start = end;
    }
    raw.len()
}

fn lines(body: &[u8]) -> u32 {
    count(body.iter().filter(|b| **b == b'\n').count())
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ----- Content-* fields -----

/// A MIME value with parameters (`type/subtype; a=b` or `attachment; filename="x"`), the bytes of
/// each piece as written (quoted strings unquoted).
#[derive(Debug, Clone, PartialEq)]
struct Valued {
    value: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Splits `value *(";" name "=" (token / quoted-string))`, skipping comments and anything odd.
fn parse_valued(raw: &[u8]) -> Valued {
    let mut pieces: Vec<Vec<u8>> = vec![Vec::new()];
    let (mut quoted, mut escaped, mut comment) = (false, false, 0usize);
    for &b in raw {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
                continue;
            } else if b == b'"' {
                quoted = false;
                continue;
            }
        } else if comment > 0 {
            match b {
                b'(' => comment += 1,
                b')' => comment -= 1,
                _ => {}
            }
            continue;
        } else {
            match b {
                b'"' => {
                    quoted = true;
                    continue;
                }
                b'(' => {
                    comment = 1;
                    continue;
                }
                b';' => {
                    pieces.push(Vec::new());
                    continue;
                }
                _ if is_blank(b) => continue,
                _ => {}
            }
        }
        if let Some(last) = pieces.last_mut() {
            last.push(b);
        }
    }
    let mut pieces = pieces.into_iter();
    let value = pieces.next().unwrap_or_default();
    let params = pieces
        .filter_map(|p| {
            let eq = p.iter().position(|b| *b == b'=')?;
            let (name, value) = (p[..eq].to_vec(), p[eq + 1..].to_vec());
            (!name.is_empty()).then_some((name, value))
        })
        .collect();
    Valued { value, params }
}

fn params_of(params: &[(Vec<u8>, Vec<u8>)]) -> Vec<(IString<'static>, IString<'static>)> {
    params
        .iter()
        .map(|(name, value)| (istring(name), istring(value)))
        .collect()
}

/// A part's Content-Type: type and subtype as written, with parameters.
#[derive(Debug, Clone, PartialEq)]
struct ContentType {
    r#type: Vec<u8>,
    subtype: Vec<u8>,
    params: Vec<(Vec<u8>, Vec<u8>)>,
}

impl ContentType {
    /// RFC 2045's default (and what a missing or unreadable Content-Type means).
    fn text_plain() -> ContentType {
        ContentType {
            r#type: b"text".to_vec(),
            subtype: b"plain".to_vec(),
            params: vec![(b"charset".to_vec(), b"us-ascii".to_vec())],
        }
    }

    /// RFC 2046's default inside a multipart/digest.
    fn message_rfc822() -> ContentType {
        ContentType {
            r#type: b"message".to_vec(),
            subtype: b"rfc822".to_vec(),
            params: Vec::new(),
        }
    }

    fn of(header: &[u8], default: fn() -> ContentType) -> ContentType {
        let Some(value) = header_value(header, "content-type") else {
            return default();
        };
        let parsed = parse_valued(&value);
        let mut split = parsed.value.splitn(2, |b| *b == b'/');
        let (Some(t), Some(s)) = (split.next(), split.next()) else {
            return ContentType::text_plain();
        };
        if t.is_empty() || s.is_empty() {
            return ContentType::text_plain();
        }
        ContentType {
            r#type: t.to_vec(),
            subtype: s.to_vec(),
            params: parsed.params,
        }
    }

    fn is(&self, t: &str, s: Option<&str>) -> bool {
        self.r#type.eq_ignore_ascii_case(t.as_bytes())
            && s.is_none_or(|s| self.subtype.eq_ignore_ascii_case(s.as_bytes()))
    }
}

// ----- the MIME tree -----

/// Whether a part's body is its octets as they are (7bit, 8bit, binary): only then can a
/// message/rfc822 part be opened without decoding (a base64 one stays opaque, as in Dovecot).
fn is_identity_encoded(header: &[u8]) -> bool {
    header_value(header, "content-transfer-encoding").is_none_or(|e| {
        [&b"7bit"[..], b"8bit", b"binary", b""]
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    })
}

/// A part: its MIME header (for the message itself, the message header) and its body, both
/// slices of the stored message.
#[derive(Debug)]
struct Node<'a> {
    header: &'a [u8],
    body: &'a [u8],
    ctype: ContentType,
    kind: Kind<'a>,
}

#[derive(Debug)]
enum Kind<'a> {
    Leaf,
    Multi(Vec<Node<'a>>),
    /// A message/rfc822 part: the message it carries.
    Message(Box<Node<'a>>),
}

impl<'a> Node<'a> {
    /// A message (the stored one, or one carried by a message/rfc822 part).
    fn message(raw: &'a [u8], depth: usize) -> Node<'a> {
        match mailparse::parse_mail(raw) {
            Ok(parsed) => Node::from_parsed(&parsed, ContentType::text_plain, depth),
            Err(_) => Node::opaque(raw, ContentType::text_plain()),
        }
    }

    fn opaque(raw: &'a [u8], ctype: ContentType) -> Node<'a> {
        let (header, body) = raw.split_at(header_end(raw));
        Node {
            header,
            body,
            ctype,
            kind: Kind::Leaf,
        }
    }

    fn from_parsed(
        parsed: &mailparse::ParsedMail<'a>,
        default: fn() -> ContentType,
        depth: usize,
    ) -> Node<'a> {
        let raw = parsed.raw_bytes;
        let (header, body) = raw.split_at(header_end(raw));
        let mut ctype = ContentType::of(header, default);
        let kind = if ctype.is("multipart", None) {
            if parsed.subparts.is_empty() {
                // No boundary, or none found: shown as text.
                ctype = ContentType::text_plain();
                Kind::Leaf
            } else {
                let default = if ctype.is("multipart", Some("digest")) {
                    ContentType::message_rfc822
                } else {
                    ContentType::text_plain
                };
                Kind::Multi(
                    parsed
                        .subparts
                        .iter()
                        .map(|p| Node::from_parsed(p, default, depth))
                        .collect(),
                )
            }
        } else if ctype.is("message", Some("rfc822")) && is_identity_encoded(header) {
            Kind::Message(Box::new(if depth < MAX_MESSAGE_DEPTH {
                Node::message(body, depth + 1)
            } else {
                Node::opaque(body, ContentType::text_plain())
            }))
        } else {
            Kind::Leaf
        };
        Node {
            header,
            body,
            ctype,
            kind,
        }
    }

    /// Part `n` below this one; `message_level` when this node is a message (whose part 1 is its
    /// own body when it is not multipart).
    fn child(&self, n: usize, message_level: bool) -> Option<&Node<'a>> {
        match &self.kind {
            Kind::Multi(children) => children.get(n.checked_sub(1)?),
            _ if message_level => (n == 1).then_some(self),
            Kind::Message(inner) => inner.child(n, true),
            Kind::Leaf => None,
        }
    }

    fn find(&self, part: &Part) -> Option<&Node<'a>> {
        let mut node = self;
        let mut message_level = true;
        for n in part.0.as_ref() {
            node = node.child(n.get() as usize, message_level)?;
            message_level = false;
        }
        Some(node)
    }

    /// The message a message/rfc822 part carries.
    fn carried(&self) -> Option<&Node<'a>> {
        match &self.kind {
            Kind::Message(inner) => Some(inner),
            _ => None,
        }
    }

    fn structure(&self, extensions: bool) -> BodyStructure<'static> {
        let header = self.header;
        let language = || {
            header_value(header, "content-language")
                .map(|v| {
                    v.split(|b| *b == b',')
                        .map(trim)
                        .filter(|l| !l.is_empty())
                        .map(istring)
                        .collect()
                })
                .unwrap_or_default()
        };
        let disposition = || Disposition {
            disposition: header_value(header, "content-disposition")
                .map(|v| parse_valued(&v))
                .filter(|d| !d.value.is_empty())
                .map(|d| (istring(&d.value), params_of(&d.params))),
            tail: Some(Language {
                language: language(),
                tail: Some(Location {
                    location: nstring(header_value(header, "content-location").as_deref()),
                    extensions: Vec::new(),
                }),
            }),
        };
        if let Kind::Multi(children) = &self.kind {
            let bodies: Vec<BodyStructure<'static>> =
                children.iter().map(|c| c.structure(extensions)).collect();
            if let Ok(bodies) = NonEmptyVec::try_from(bodies) {
                return BodyStructure::Multi {
                    bodies,
                    subtype: istring(&self.ctype.subtype),
                    extension_data: extensions.then(|| MultiPartExtensionData {
                        parameter_list: params_of(&self.ctype.params),
                        tail: Some(disposition()),
                    }),
                };
            }
        }
        let encoding = header_value(header, "content-transfer-encoding")
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| b"7bit".to_vec());
        let basic = BasicFields {
            parameter_list: params_of(&self.ctype.params),
            id: nstring(header_value(header, "content-id").as_deref()),
            description: nstring(header_value(header, "content-description").as_deref()),
            content_transfer_encoding: istring(&encoding),
            size: count(self.body.len()),
        };
        let specific = match &self.kind {
            Kind::Message(inner) => SpecificFields::Message {
                envelope: Box::new(envelope_of(inner.header)),
                body_structure: Box::new(inner.structure(extensions)),
                number_of_lines: lines(self.body),
            },
            // Encoded, so not opened: "message" "rfc822" would promise an envelope.
            _ if self.ctype.is("message", Some("rfc822")) => SpecificFields::Basic {
                r#type: istring(b"application"),
                subtype: istring(b"octet-stream"),
            },
            _ if self.ctype.is("text", None) => SpecificFields::Text {
                subtype: istring(&self.ctype.subtype),
                number_of_lines: lines(self.body),
            },
            _ => SpecificFields::Basic {
                r#type: istring(&self.ctype.r#type),
                subtype: istring(&self.ctype.subtype),
            },
        };
        BodyStructure::Single {
            body: Body { basic, specific },
            extension_data: extensions.then(|| SinglePartExtensionData {
                md5: NString(None),
                tail: Some(disposition()),
            }),
        }
    }
}

/// `BODYSTRUCTURE` (with extension data) or `BODY` (without) of a stored message.
pub(super) fn body_structure(raw: &[u8], extensions: bool) -> BodyStructure<'static> {
    Node::message(raw, 0).structure(extensions)
}

/// The octets of a section of a stored message: the whole message, its header or text, or of a
/// numbered part (`n.n`, `n.MIME`, `n.HEADER`, `n.TEXT`, `n.HEADER.FIELDS (..)`). A part that
/// does not exist, and `HEADER` / `TEXT` of a part that is not a message, give no octets.
pub(super) fn section(raw: &[u8], section: Option<&Section<'_>>) -> Vec<u8> {
    type Names<'n> = NonEmptyVec<AString<'n>>;
    let pick = |header: &[u8], names: &Names<'_>, keep: bool| {
        let names: Vec<&[u8]> = names.as_ref().iter().map(|n| n.as_ref()).collect();
        select_fields(header, &names, keep)
    };
    let Some(section) = section else {
        return raw.to_vec();
    };
    let part = match section {
        Section::Part(part) | Section::Mime(part) => Some(part),
        Section::Header(part)
        | Section::Text(part)
        | Section::HeaderFields(part, _)
        | Section::HeaderFieldsNot(part, _) => part.as_ref(),
    };
    let Some(part) = part else {
        // The message itself: no need to know its parts.
        let (header, body) = raw.split_at(header_end(raw));
        return match section {
            Section::Text(_) => body.to_vec(),
            Section::HeaderFields(_, names) => pick(header, names, true),
            Section::HeaderFieldsNot(_, names) => pick(header, names, false),
            _ => header.to_vec(),
        };
    };
    let root = Node::message(raw, 0);
    let Some(node) = root.find(part) else {
        return Vec::new();
    };
    if let Section::Part(_) = section {
        return node.body.to_vec();
    }
    if let Section::Mime(_) = section {
        return node.header.to_vec();
    }
    let Some(message) = node.carried() else {
        return Vec::new();
    };
    match section {
        Section::Text(_) => message.body.to_vec(),
        Section::HeaderFields(_, names) => pick(message.header, names, true),
        Section::HeaderFieldsNot(_, names) => pick(message.header, names, false),
        _ => message.header.to_vec(),
    }
}

// ----- envelope -----

/// `ENVELOPE` of a stored message.
pub(super) fn envelope(raw: &[u8]) -> Envelope<'static> {
    envelope_of(&raw[..header_end(raw)])
}

fn envelope_of(header: &[u8]) -> Envelope<'static> {
    let value = |name: &str| header_value(header, name);
    let id = |name: &str| nstring(value(name).filter(|v| !v.is_empty()).as_deref());
    let list = |name: &str| value(name).map(|v| addresses(&v)).unwrap_or_default();
    let from = list("from");
    let or_from = |list: Vec<Address<'static>>| {
        if list.is_empty() { from.clone() } else { list }
    };
    Envelope {
        date: nstring(value("date").as_deref()),
        subject: nstring(value("subject").as_deref()),
        sender: or_from(list("sender")),
        reply_to: or_from(list("reply-to")),
        to: list("to"),
        cc: list("cc"),
        bcc: list("bcc"),
        in_reply_to: id("in-reply-to"),
        message_id: id("message-id"),
        from,
    }
}

/// One step of an address list: a mailbox, the start of a group (its name) or its end.
#[derive(Debug)]
enum Item {
    Mailbox { text: Vec<u8>, comment: Vec<u8> },
    GroupStart(Vec<u8>),
    GroupEnd,
}

/// Splits an (unfolded) address list at its top-level commas and group marks, comments dropped
/// (the last one kept aside: some mailers put the name there).
fn items(value: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let (mut text, mut comment) = (Vec::new(), Vec::new());
    let (mut quoted, mut escaped, mut depth, mut angle) = (false, false, 0usize, false);
    let mut in_group = false;
    let flush = |items: &mut Vec<Item>, text: &mut Vec<u8>, comment: &mut Vec<u8>| {
        if !trim(text).is_empty() {
            items.push(Item::Mailbox {
                text: std::mem::take(text),
                comment: std::mem::take(comment),
            });
        }
        text.clear();
        comment.clear();
    };
    for &b in value {
        if quoted {
            text.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = false;
            }
            continue;
        }
        if depth > 0 {
            match b {
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            if depth > 0 {
                comment.push(b);
            }
            continue;
        }
        match b {
            b'"' => {
                quoted = true;
                text.push(b);
            }
            b'(' => {
                depth = 1;
                comment.clear();
            }
            b'<' => {
                angle = true;
                text.push(b);
            }
            b'>' => {
                angle = false;
                text.push(b);
            }
            b',' if !angle => flush(&mut items, &mut text, &mut comment),
            b':' if !angle && !in_group && !text.contains(&b'<') => {
                items.push(Item::GroupStart(phrase(&text)));
                text.clear();
                comment.clear();
                in_group = true;
            }
            b';' if !angle && in_group => {
                flush(&mut items, &mut text, &mut comment);
                items.push(Item::GroupEnd);
                in_group = false;
            }
            _ => text.push(b),
        }
    }
    flush(&mut items, &mut text, &mut comment);
    if in_group {
        items.push(Item::GroupEnd);
    }
    items
}

/// A display name: quotes removed, white space collapsed; encoded words stay as they are.
fn phrase(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut space) = (false, false, false);
    for &b in trim(text) {
        if quoted {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
                continue;
            } else if b == b'"' {
                quoted = false;
                continue;
            }
            out.push(b);
            continue;
        }
        if b == b'"' {
            quoted = true;
            if space {
                out.push(b' ');
                space = false;
            }
        } else if is_blank(b) {
            space = !out.is_empty();
        } else {
            if space {
                out.push(b' ');
                space = false;
            }
            out.push(b);
        }
    }
    out
}

fn address(text: &[u8], comment: &[u8]) -> Address<'static> {
    let (name, spec) = match text.iter().position(|b| *b == b'<') {
        Some(open) => {
            let rest = &text[open + 1..];
            let close = rest.iter().position(|b| *b == b'>').unwrap_or(rest.len());
            (phrase(&text[..open]), &rest[..close])
        }
        None => (Vec::new(), text),
    };
    let name = if name.is_empty() {
        phrase(comment)
    } else {
        name
    };
    let spec: Vec<u8> = spec.iter().copied().filter(|b| !is_blank(*b)).collect();
    let (adl, spec) = match spec.iter().position(|b| *b == b':') {
        Some(colon) => (Some(&spec[..colon]), &spec[colon + 1..]),
        None => (None, spec.as_slice()),
    };
    let (mailbox, host) = match spec.iter().rposition(|b| *b == b'@') {
        Some(at) => (&spec[..at], &spec[at + 1..]),
        None => (spec, &[][..]),
    };
    let or = |bytes: &[u8], missing: &'static [u8]| {
        nstring(Some(if bytes.is_empty() { missing } else { bytes }))
    };
    Address {
        name: nstring((!name.is_empty()).then_some(name.as_slice())),
        adl: nstring(adl.filter(|a| !a.is_empty())),
        mailbox: or(mailbox, b"MISSING_MAILBOX"),
        host: or(host, b"MISSING_DOMAIN"),
    }
}

fn addresses(value: &[u8]) -> Vec<Address<'static>> {
    items(value)
        .into_iter()
        .map(|item| match item {
            Item::Mailbox { text, comment } => address(&text, &comment),
            Item::GroupStart(name) => Address {
                name: NString(None),
                adl: NString(None),
                mailbox: nstring(Some(&name)),
                host: NString(None),
            },
            Item::GroupEnd => Address {
                name: NString(None),
                adl: NString(None),
                mailbox: NString(None),
                host: NString(None),
            },
        })
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use std::num::NonZeroU32;

    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder as _;
    use imap_codec::encode::Encoder as _;
    use imap_codec::imap_types::fetch::MessageDataItem;
    use imap_codec::imap_types::response::{Data, Response};

    use super::*;

    fn encode(item: MessageDataItem<'static>) -> Vec<u8> {
        let data = Data::Fetch {
            seq: NonZeroU32::MIN,
            items: NonEmptyVec::from(item),
        };
        ResponseCodec::new().encode(&Response::Data(data)).dump()
    }

    /// Whether a client (imap-codec's own decoder) reads the whole response back.
    fn decodes(bytes: &[u8]) -> bool {
        matches!(ResponseCodec::new().decode(bytes), Ok((rest, _)) if rest.is_empty())
    }

    /// An item as it goes on the wire (after `* 1 FETCH (`), checked to decode back.
    fn wire(item: MessageDataItem<'static>) -> String {
        let bytes = encode(item);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(decodes(&bytes), "{text}");
        text.strip_prefix("* 1 FETCH (")
            .and_then(|t| t.strip_suffix(")\r\n"))
            .unwrap_or(&text)
            .to_owned()
    }

    /// How many structures are nested (imap-codec's decoder reads up to about 7).
    fn nesting(s: &BodyStructure<'_>) -> usize {
        1 + match s {
            BodyStructure::Multi { bodies, .. } => {
                bodies.as_ref().iter().map(nesting).max().unwrap_or(0)
            }
            BodyStructure::Single {
                body:
                    Body {
                        specific: SpecificFields::Message { body_structure, .. },
                        ..
                    },
                ..
            } => nesting(body_structure),
            BodyStructure::Single { .. } => 0,
        }
    }

    fn part(numbers: &[u32]) -> Part {
        let numbers: Vec<NonZeroU32> = numbers
            .iter()
            .map(|n| NonZeroU32::new(*n).unwrap())
            .collect();
        Part(NonEmptyVec::try_from(numbers).unwrap())
    }

    fn section_of(raw: &[u8], section: Section<'_>) -> Vec<u8> {
        super::section(raw, Some(&section))
    }

    /// RFC 3501 §7.4.2's example message.
    const PLAIN: &str = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n\
        From: Terry Gray <gray@cac.washington.edu>\r\n\
        Subject: IMAP4rev1 WG mtg summary and minutes\r\n\
        To: imap@cac.washington.edu\r\n\
        cc: minutes@CNRI.Reston.VA.US,\r\n \
        John Klensin <KLENSIN@MIT.EDU>\r\n\
        Message-Id: <B27397-0100000@cac.washington.edu>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\
        \r\n\
        Hello\r\nWorld\r\n";

    #[test]
    fn envelope_of_rfc_3501_example() {
        assert_eq!(
            wire(MessageDataItem::Envelope(envelope(PLAIN.as_bytes()))),
            "ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \
             \"IMAP4rev1 WG mtg summary and minutes\" \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) \
             ((NIL NIL \"imap\" \"cac.washington.edu\")) \
             ((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")\
             (\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL \
             \"<B27397-0100000@cac.washington.edu>\")"
        );
    }

    #[test]
    fn envelope_keeps_encoded_words_groups_and_eight_bit_bytes() {
        let raw = "From: \"=?UTF-8?Q?Per_conto_di:_mario?=\" <posta-certificata@pec.it>\r\n\
            Sender: <>\r\n\
            Reply-To: \"Rossi, \\\"Mario\\\"\" <mario@pec.it> (ufficio)\r\n\
            To: undisclosed-recipients:;\r\n\
            Cc: Ufficio: a@b.it, c@d.it;, e@f.it (Nome Cognome), senzadominio\r\n\
            Subject: =?UTF-8?Q?Ricevuta_di_accettazione?=\r\n\
            In-Reply-To: <x@y>\r\n\
            \r\n";
        assert_eq!(
            wire(MessageDataItem::Envelope(envelope(raw.as_bytes()))),
            "ENVELOPE (NIL \"=?UTF-8?Q?Ricevuta_di_accettazione?=\" \
             ((\"=?UTF-8?Q?Per_conto_di:_mario?=\" NIL \"posta-certificata\" \"pec.it\")) \
             ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")) \
             ((\"Rossi, \\\"Mario\\\"\" NIL \"mario\" \"pec.it\")) \
             ((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
             ((NIL NIL \"Ufficio\" NIL)(NIL NIL \"a\" \"b.it\")(NIL NIL \"c\" \"d.it\")\
             (NIL NIL NIL NIL)(\"Nome Cognome\" NIL \"e\" \"f.it\")\
             (NIL NIL \"senzadominio\" \"MISSING_DOMAIN\")) \
             NIL \"<x@y>\" NIL)"
        );
        let raw = "Subject: citt\u{e0}\r\nFrom: Nic\u{f2} <n@x.it>\r\n\r\nx";
        assert_eq!(
            wire(MessageDataItem::Envelope(envelope(raw.as_bytes()))),
            "ENVELOPE (NIL {6}\r\ncitt\u{e0} ((NIL NIL \"n\" \"x.it\")) \
             ((NIL NIL \"n\" \"x.it\")) ((NIL NIL \"n\" \"x.it\")) NIL NIL NIL NIL NIL)"
                .replace("(NIL NIL \"n\"", "({5}\r\nNic\u{f2} NIL \"n\"")
        );
    }

    #[test]
    fn structure_of_a_plain_text_message() {
        let raw = PLAIN.as_bytes();
        assert_eq!(
            wire(MessageDataItem::BodyStructure(body_structure(raw, true))),
            "BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 14 2 \
             NIL NIL NIL NIL)"
        );
        assert_eq!(
            wire(MessageDataItem::Body(body_structure(raw, false))),
            "BODY (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7bit\" 14 2)"
        );
        // No Content-Type: RFC 2045's default.
        let raw = b"Subject: x\n\nuno\ndue";
        assert_eq!(
            wire(MessageDataItem::Body(body_structure(raw, false))),
            "BODY (\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 7 1)"
        );
        assert_eq!(section_of(raw, Section::Part(part(&[1]))), b"uno\ndue");
        assert_eq!(section_of(raw, Section::Part(part(&[2]))), b"");
        assert_eq!(section_of(raw, Section::Part(part(&[1, 1]))), b"");
    }

    const ALTERNATIVE: &str = "From: a@example.it\r\n\
        Subject: alt\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/alternative; boundary=\"XX\"\r\n\
        Content-Language: it\r\n\
        \r\n\
        preamble\r\n\
        --XX\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        ciao\r\n\
        --XX\r\n\
        Content-Type: text/html; charset=utf-8\r\n\
        Content-Transfer-Encoding: quoted-printable\r\n\
        Content-ID: <h@x>\r\n\
        \r\n\
        <p>ciao</p>\r\n\r\n\
        --XX--\r\n\
        epilogue\r\n";

    #[test]
    fn structure_of_multipart_alternative() {
        let raw = ALTERNATIVE.as_bytes();
        assert_eq!(
            wire(MessageDataItem::BodyStructure(body_structure(raw, true))),
            "BODYSTRUCTURE ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 4 0 \
             NIL NIL NIL NIL)(\"TEXT\" \"html\" (\"charset\" \"utf-8\") \"<h@x>\" NIL \
             \"quoted-printable\" 13 1 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"XX\") \
             NIL (\"it\") NIL)"
        );
        assert_eq!(
            wire(MessageDataItem::Body(body_structure(raw, false))),
            "BODY ((\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 4 0)\
             (\"TEXT\" \"html\" (\"charset\" \"utf-8\") \"<h@x>\" NIL \"quoted-printable\" 13 1) \
             \"alternative\")"
        );
        assert_eq!(
            section_of(raw, Section::Part(part(&[2]))),
            b"<p>ciao</p>\r\n"
        );
        assert_eq!(
            section_of(raw, Section::Mime(part(&[1]))),
            b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        );
        // HEADER and TEXT only exist for message/rfc822 parts.
        assert_eq!(section_of(raw, Section::Header(Some(part(&[1])))), b"");
        assert_eq!(section_of(raw, Section::Text(Some(part(&[1])))), b"");
        assert_eq!(section_of(raw, Section::Part(part(&[3]))), b"");
    }

    #[test]
    fn an_encoded_message_part_stays_opaque() {
        let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
            Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n\
            U3ViamVjdDogeA0KDQp5DQo=\r\n--b--\r\n";
        assert_eq!(
            wire(MessageDataItem::Body(body_structure(raw, false))),
            "BODY ((\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 24) \"mixed\")"
        );
        assert_eq!(section_of(raw, Section::Header(Some(part(&[1])))), b"");
    }

    /// The message carried as postacert.eml: the sender's own, with an attachment.
    pub(crate) const POSTACERT: &str = "From: Mario Rossi <mario.rossi@pec.it>\r\n\
        To: protocollo@pec.sandbox.test\r\n\
        Subject: Richiesta di accesso agli atti\r\n\
        Date: Mon, 2 Mar 2026 10:00:00 +0100\r\n\
        Message-ID: <orig-1@pec.it>\r\n\
        MIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"I1\"\r\n\
        \r\n\
        --I1\r\n\
        Content-Type: text/plain; charset=utf-8\r\n\
        \r\n\
        Buongiorno,\r\nin allegato la richiesta.\r\n\
        --I1\r\n\
        Content-Type: application/pdf; name=\"richiesta.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\
        Content-Disposition: attachment; filename=\"richiesta.pdf\"\r\n\
        \r\n\
        JVBERi0xLjQK\r\n\
        --I1--";

    pub(crate) const DATICERT: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
        <postacert tipo=\"posta-certificata\" errore=\"nessuno\">\r\n\
        <dati><identificativo>opec-1@pec.it</identificativo></dati>\r\n\
        </postacert>";

    pub(crate) const TEXT: &str = "Messaggio di posta certificata\r\n\
        Il giorno 02/03/2026 alle ore 10:00:00 (+0100) il messaggio\r\n\
        \"Richiesta di accesso agli atti\" =E8 stato inviato da \"mario.rossi@pec.it\"";

    pub(crate) const SIGNATURE: &str = "MIIGdQYJKoZIhvcNAQcCoIIGZjCCBmICAQExDTALBglghkgBZQMEAgEw\r\n\
        CwYJKoZIhvcNAQcBoIIDzDCCA8gwggKwoAMCAQICAQEwDQYJKoZIhvcN";

    /// The busta's multipart/mixed entity: text, daticert.xml, postacert.eml.
    pub(crate) fn mixed() -> String {
        format!(
            "Content-Type: multipart/mixed; boundary=\"M1\"\r\n\
             \r\n\
             --M1\r\n\
             Content-Type: text/plain; charset=iso-8859-1\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\
             \r\n\
             {TEXT}\r\n\
             --M1\r\n\
             Content-Type: application/xml; name=\"daticert.xml\"\r\n\
             Content-Disposition: inline; filename=\"daticert.xml\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n\
             {DATICERT}\r\n\
             --M1\r\n\
             Content-Type: message/rfc822; name=\"postacert.eml\"\r\n\
             Content-Disposition: inline; filename=\"postacert.eml\"\r\n\
             \r\n\
             {POSTACERT}\r\n\
             --M1--\r\n"
        )
    }

    /// A PEC busta di trasporto: multipart/signed over [`mixed`] and smime.p7s.
    pub(crate) fn pec() -> String {
        format!(
            "Return-Path: <posta-certificata@pec.it>\r\n\
             From: \"Per conto di: mario.rossi@pec.it\" <posta-certificata@pec.it>\r\n\
             Reply-To: mario.rossi@pec.it\r\n\
             To: protocollo@pec.sandbox.test\r\n\
             Subject: POSTA CERTIFICATA: Richiesta di accesso agli atti\r\n\
             Date: Mon, 2 Mar 2026 10:00:05 +0100\r\n\
             Message-ID: <opec-1@pec.it>\r\n\
             X-Trasporto: posta-certificata\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\
             \tmicalg=sha-256; boundary=\"S1\"\r\n\
             \r\n\
             This is an S/MIME signed message\r\n\
             \r\n\
             --S1\r\n\
             {}\r\n\
             --S1\r\n\
             Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
             Content-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\
             \r\n\
             {SIGNATURE}\r\n\
             --S1--\r\n",
            mixed().trim_end_matches("\r\n")
        )
    }

    fn lf(s: &str) -> u32 {
        s.matches('\n').count() as u32
    }

    fn single<'s>(
        s: &'s BodyStructure<'static>,
    ) -> (&'s Body<'static>, &'s SinglePartExtensionData<'static>) {
        match s {
            BodyStructure::Single {
                body,
                extension_data: Some(ext),
            } => (body, ext),
            other => panic!("not a single part: {other:?}"),
        }
    }

    fn multi<'s>(s: &'s BodyStructure<'static>) -> (&'s [BodyStructure<'static>], String) {
        match s {
            BodyStructure::Multi {
                bodies, subtype, ..
            } => (
                bodies.as_ref(),
                String::from_utf8_lossy(subtype.as_ref()).into_owned(),
            ),
            other => panic!("not a multipart: {other:?}"),
        }
    }

    #[test]
    fn structure_of_a_pec_busta() {
        let raw = pec();
        let raw = raw.as_bytes();
        let top = body_structure(raw, true);
        let (parts, subtype) = multi(&top);
        assert_eq!((parts.len(), subtype.as_str()), (2, "signed"));
        let (inner, subtype) = multi(&parts[0]);
        assert_eq!((inner.len(), subtype.as_str()), (3, "mixed"));

        let (text, _) = single(&inner[0]);
        assert_eq!(text.basic.size as usize, TEXT.len());
        assert_eq!(
            text.specific,
            SpecificFields::Text {
                subtype: istring(b"plain"),
                number_of_lines: lf(TEXT),
            }
        );
        assert_eq!(
            text.basic.content_transfer_encoding,
            istring(b"quoted-printable")
        );

        let (daticert, ext) = single(&inner[1]);
        assert_eq!(daticert.basic.size as usize, DATICERT.len());
        assert_eq!(
            daticert.basic.parameter_list,
            vec![(istring(b"name"), istring(b"daticert.xml"))]
        );
        assert!(matches!(daticert.specific, SpecificFields::Basic { .. }));
        assert_eq!(
            ext.tail.as_ref().and_then(|d| d.disposition.clone()),
            Some((
                istring(b"inline"),
                vec![(istring(b"filename"), istring(b"daticert.xml"))]
            ))
        );

        let (postacert, _) = single(&inner[2]);
        assert_eq!(postacert.basic.size as usize, POSTACERT.len());
        let SpecificFields::Message {
            envelope,
            body_structure,
            number_of_lines,
        } = &postacert.specific
        else {
            panic!("not a message: {postacert:?}");
        };
        assert_eq!(*number_of_lines, lf(POSTACERT));
        assert_eq!(
            envelope.subject,
            nstring(Some(b"Richiesta di accesso agli atti"))
        );
        assert_eq!(envelope.message_id, nstring(Some(b"<orig-1@pec.it>")));
        let (carried, subtype) = multi(body_structure);
        assert_eq!((carried.len(), subtype.as_str()), (2, "mixed"));
        assert_eq!(single(&carried[1]).0.basic.size, 12);

        let (signature, _) = single(&parts[1]);
        assert_eq!(signature.basic.size as usize, SIGNATURE.len());
        assert_eq!(
            signature.specific,
            SpecificFields::Basic {
                r#type: istring(b"application"),
                subtype: istring(b"pkcs7-signature"),
            }
        );

        // BODY: the same tree without extension data, all the way down.
        let body = wire(MessageDataItem::Body(body_structure_of(raw)));
        assert!(
            body.ends_with(&format!("\"base64\" {}) \"signed\")", SIGNATURE.len())),
            "{body}"
        );
        assert!(body.contains(" \"mixed\") 19) \"mixed\")("), "{body}");
        assert!(!body.contains("\"boundary\""), "{body}");
        let full = wire(MessageDataItem::BodyStructure(top));
        assert!(
            full.ends_with(
                " \"signed\" (\"protocol\" \"application/pkcs7-signature\" \"micalg\" \
                 \"sha-256\" \"boundary\" \"S1\") NIL NIL NIL)"
            ),
            "{full}"
        );
    }

    fn body_structure_of(raw: &[u8]) -> BodyStructure<'static> {
        body_structure(raw, false)
    }

    #[test]
    fn sections_of_a_pec_busta() {
        let raw = pec();
        let raw = raw.as_bytes();
        let get = |s: Section<'static>| String::from_utf8(section_of(raw, s)).unwrap();
        assert_eq!(get(Section::Part(part(&[1, 1]))), TEXT);
        assert_eq!(get(Section::Part(part(&[1, 2]))), DATICERT);
        assert_eq!(get(Section::Part(part(&[1, 3]))), POSTACERT);
        assert_eq!(get(Section::Part(part(&[2]))), SIGNATURE);
        assert_eq!(get(Section::Part(part(&[1, 3, 2]))), "JVBERi0xLjQK");
        assert_eq!(
            get(Section::Part(part(&[1, 3, 1]))),
            "Buongiorno,\r\nin allegato la richiesta."
        );
        let (header, text) = POSTACERT.split_at(POSTACERT.find("\r\n\r\n").unwrap() + 4);
        assert_eq!(get(Section::Header(Some(part(&[1, 3])))), header);
        assert_eq!(get(Section::Text(Some(part(&[1, 3])))), text);
        let subject = AString::try_from("SUBJECT").unwrap();
        assert_eq!(
            get(Section::HeaderFields(
                Some(part(&[1, 3])),
                NonEmptyVec::from(subject.clone())
            )),
            "Subject: Richiesta di accesso agli atti\r\n\r\n"
        );
        assert!(
            !get(Section::HeaderFieldsNot(
                Some(part(&[1, 3])),
                NonEmptyVec::from(subject)
            ))
            .contains("Subject")
        );
        assert_eq!(
            get(Section::Mime(part(&[1, 2]))),
            "Content-Type: application/xml; name=\"daticert.xml\"\r\n\
             Content-Disposition: inline; filename=\"daticert.xml\"\r\n\
             Content-Transfer-Encoding: 7bit\r\n\r\n"
        );
        assert!(get(Section::Part(part(&[1]))).starts_with("--M1\r\n"));
        for missing in [
            &[3][..],
            &[1, 4],
            &[1, 2, 1],
            &[2, 1],
            &[1, 3, 3],
            &[1, 3, 1, 1],
        ] {
            assert_eq!(get(Section::Part(part(missing))), "", "{missing:?}");
            assert_eq!(get(Section::Mime(part(missing))), "", "{missing:?}");
        }
        assert_eq!(get(Section::Header(Some(part(&[1, 2])))), "");
        assert_eq!(
            section_of(raw, Section::Text(None)),
            &raw[header_end(raw)..]
        );
    }

    /// Random bytes, truncated and mangled multiparts, 8-bit headers, deep nesting (a fixed
    /// xorshift sequence): structure, envelope and sections always come out, and encode.
    #[test]
    fn garbage_never_panics() {
        let mut state: u64 = 0x1234_5678_9abc_def1;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n.max(1)
        };
        let pec = pec().into_bytes();
        let mut deep = String::new();
        for i in 0..150 {
            deep.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
            ));
        }
        let mut nested = String::from("Subject: x\r\n\r\nend");
        for _ in 0..40 {
            nested = format!("Content-Type: message/rfc822\r\n\r\n{nested}");
        }
        let (mut checked, mut decoded) = (0, 0);
        for i in 0..400u64 {
            let raw: Vec<u8> = match i % 8 {
                0 => (0..next(400)).map(|_| next(256) as u8).collect(),
                1 => pec[..next(pec.len() as u64) as usize].to_vec(),
                2 => {
                    let mut m = pec.clone();
                    for _ in 0..=next(20) {
                        let at = next(m.len() as u64) as usize;
                        m[at] = next(256) as u8;
                    }
                    m
                }
                3 => String::from_utf8_lossy(&pec)
                    .replace("boundary=\"M1\"", "")
                    .into_bytes(),
                4 => {
                    let mut m = b"Subject: ".to_vec();
                    m.extend((0..next(60)).map(|_| 0x80 + next(128) as u8));
                    m.extend_from_slice(b"\r\nFrom: \xc3\xa8 <\xff@\xfe>, (\"<:;\r\n\r\n\x00");
                    m
                }
                5 => deep.as_bytes()[..next(deep.len() as u64) as usize].to_vec(),
                6 => nested.clone().into_bytes(),
                _ => {
                    let cut = next(pec.len() as u64) as usize;
                    let mut m = pec[..cut].to_vec();
                    m.extend((0..next(50)).map(|_| b"\r\n-:;\"<>()@\\ ="[next(14) as usize]));
                    m
                }
            };
            assert!(decodes(&encode(MessageDataItem::Envelope(envelope(&raw)))));
            for extensions in [false, true] {
                let structure = body_structure(&raw, extensions);
                let shallow = nesting(&structure) <= 6;
                let bytes = encode(if extensions {
                    MessageDataItem::BodyStructure(structure)
                } else {
                    MessageDataItem::Body(structure)
                });
                assert!(
                    !shallow || decodes(&bytes),
                    "{}",
                    String::from_utf8_lossy(&bytes)
                );
                decoded += usize::from(shallow);
            }
            for numbers in [&[1][..], &[2], &[1, 1], &[1, 3], &[1, 3, 1], &[9, 9]] {
                for s in [
                    Section::Part(part(numbers)),
                    Section::Mime(part(numbers)),
                    Section::Header(Some(part(numbers))),
                    Section::Text(Some(part(numbers))),
                ] {
                    assert!(section_of(&raw, s).len() <= raw.len());
                }
            }
            checked += 1;
        }
        assert_eq!(checked, 400);
        assert!(
            decoded > 600,
            "{decoded} of 800 structures checked by the decoder"
        );
    }
}
