//! Small helpers over `mailparse`: case-insensitive header lookup, content types, file names,
//! the search for the signed entity, and quoted-printable decoding.

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
        Body::Base64(b) => b
            .get_decoded()
            .map(Cow::Owned)
            .map_err(|e| (e.to_string(), b.get_raw())),
        Body::QuotedPrintable(b) => Ok(Cow::Owned(decode_quoted_printable(b.get_raw()))),
        Body::SevenBit(b) | Body::EightBit(b) => Ok(Cow::Borrowed(b.get_raw())),
        Body::Binary(b) => Ok(Cow::Borrowed(b.get_raw())),
    }
}

/// Undoes quoted-printable exactly as `mailparse` does (the `quoted_printable` crate in robust
/// mode: bytes other than printable ASCII, TAB, CR and LF dropped; white space at the end of a
/// line dropped; `=` at the end of a line joins it to the next; a malformed `=XY` kept as
/// written; lines end in CRLF), a run of plain bytes at a time: that decoder went through a
/// `String` of `char`s and was a tenth of a message's parse.
pub(crate) fn decode_quoted_printable(body: &[u8]) -> Vec<u8> {
    let kept = |b: u8| matches!(b, b'\t' | b'\r' | b'\n' | b' '..=b'~');
    let filtered: std::borrow::Cow<'_, [u8]> = if body.iter().all(|&b| kept(b)) {
        body.into()
    } else {
        body.iter()
            .copied()
            .filter(|&b| kept(b))
            .collect::<Vec<u8>>()
            .into()
    };
    let mut out = Vec::with_capacity(filtered.len());
    // Whether the last line ended without a soft break: its CRLF is written once another line
    // (or the input's own final LF) follows.
    let mut line_break = false;
    let mut rest: &[u8] = &filtered;
    while !rest.is_empty() {
        let line;
        (line, rest) = match memchr::memchr(b'\n', rest) {
            Some(lf) => (&rest[..lf], &rest[lf + 1..]),
            None => (rest, &[][..]),
        };
        if line_break {
            out.extend_from_slice(b"\r\n");
        }
        line_break = decode_quoted_printable_line(line.trim_ascii_end(), &mut out);
    }
    if line_break && filtered.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decodes one line (without its line end) into `out`; false when it ends in a soft break.
fn decode_quoted_printable_line(mut line: &[u8], out: &mut Vec<u8>) -> bool {
    let hex = |b: u8| char::from(b).to_digit(16);
    while let Some(at) = memchr::memchr(b'=', line) {
        out.extend_from_slice(&line[..at]);
        match line[at + 1..] {
            [] => return false,
            [upper] => {
                out.extend_from_slice(&[b'=', upper]);
                return true;
            }
            [upper, lower, ..] => {
                match (hex(upper), hex(lower)) {
                    // Both below 16: the byte fits.
                    (Some(high), Some(low)) => out.push(((high << 4) | low) as u8),
                    _ => out.extend_from_slice(&[b'=', upper, lower]),
                }
                line = &line[at + 3..];
            }
        }
    }
    out.extend_from_slice(line);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_printable_decodes_like_mailparse() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"caff=C3=A8 =\r\nfreddo\r\n", b"caff\xc3\xa8 freddo\r\n"),
            (b"riga  \t\nseconda", b"riga\r\nseconda"),
            (b"=3D=3d=ZZ=4", b"===ZZ=4"),
            (b"a\x80b\n\n", b"ab\r\n\r\n"),
            (b"fine=", b"fine"),
            (b"", b""),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(decode_quoted_printable(encoded), decoded, "{encoded:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        #[test]
        fn quoted_printable_matches_the_quoted_printable_crate(
            body in proptest::collection::vec(
                proptest::sample::select(
                    b"=aF0g9 \t\r\n\x80\x0c~".to_vec()
                ),
                0..200,
            )
        ) {
            let expected = quoted_printable::decode(&body, quoted_printable::ParseMode::Robust)
                .expect("robust mode always decodes");
            proptest::prop_assert_eq!(decode_quoted_printable(&body), expected);
        }
    }
}
