//! Small helpers over `mailparse`: case-insensitive header lookup, content types, file names,
//! and the search for the signed entity.

use mailparse::{MailHeaderMap, ParsedMail};

/// First value of a header (RFC 2047 decoded), matched case-insensitively, trimmed.
pub(crate) fn header(mail: &ParsedMail<'_>, name: &str) -> Option<String> {
    mail.headers
        .get_first_value(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The lower-case MIME type of a part, e.g. `multipart/signed`.
pub(crate) fn mimetype(mail: &ParsedMail<'_>) -> String {
    mail.ctype.mimetype.to_ascii_lowercase()
}

/// Finds the first `multipart/signed` entity, from the top and below it through `multipart/*`
/// parts only: a PEC forwarded as a `message/rfc822` attachment is not this message's signature.
pub fn find_signed<'m, 'a>(mail: &'m ParsedMail<'a>) -> Option<&'m ParsedMail<'a>> {
    let mime = mimetype(mail);
    if mime == "multipart/signed" {
        return Some(mail);
    }
    if !mime.starts_with("multipart/") {
        return None;
    }
    mail.subparts.iter().find_map(find_signed)
}

/// The file name of a part: Content-Disposition `filename` (RFC 2231 aware), else Content-Type
/// `name`; RFC 2047 encoded words decoded when the name is made only of them.
pub(crate) fn filename(mail: &ParsedMail<'_>) -> Option<String> {
    let disposition = mail.get_content_disposition();
    let raw = disposition
        .params
        .get("filename")
        .or_else(|| mail.ctype.params.get("name"))?;
    let name = decode_encoded_words(raw);
    let name = name.trim().trim_matches('"').trim().to_owned();
    (!name.is_empty()).then_some(name)
}

/// Decodes RFC 2047 encoded words in a parameter value (mail clients put them in quoted
/// `name="=?UTF-8?B?...?="` parameters, which RFC 2231 parsing leaves alone).
pub(crate) fn decode_encoded_words(value: &str) -> String {
    if !value.contains("=?") {
        return value.to_owned();
    }
    // Reuse mailparse's RFC 2047 decoder by parsing a synthetic header line.
    let line = format!("X: {}", value.replace(['\r', '\n'], " "));
    match mailparse::parse_header(line.as_bytes()) {
        Ok((h, _)) => h.get_value(),
        Err(_) => value.to_owned(),
    }
}

/// Whether a part is marked `Content-Disposition: attachment`.
pub(crate) fn is_attachment_disposition(mail: &ParsedMail<'_>) -> bool {
    mail.get_content_disposition().disposition == mailparse::DispositionType::Attachment
}

/// Strips whitespace and one pair of angle brackets.
pub(crate) fn strip_angle(value: &str) -> &str {
    crate::daticert::normalize_msgid(value)
}

/// A part's body with its transfer encoding undone; borrowed when nothing needs decoding.
/// `Err` carries the undecodable raw body.
pub(crate) fn decoded_body<'a>(
    part: &'a ParsedMail<'a>,
) -> Result<std::borrow::Cow<'a, [u8]>, (String, &'a [u8])> {
    use mailparse::body::Body;
    use std::borrow::Cow;
    match part.get_body_encoded() {
        Body::Base64(b) | Body::QuotedPrintable(b) => b
            .get_decoded()
            .map(Cow::Owned)
            .map_err(|e| (e.to_string(), b.get_raw())),
        Body::SevenBit(b) | Body::EightBit(b) => Ok(Cow::Borrowed(b.get_raw())),
        Body::Binary(b) => Ok(Cow::Borrowed(b.get_raw())),
    }
}
