//! Encodings: the stable hash, line endings, base64, quoted-printable, RFC 2047 words, RFC 2231 parameters and header folding.

use super::*;

/// FNV-1a, 64 bits: a stable hash for boundaries and ids (std's hasher is not stable).
pub(super) struct Fnv(pub(super) u64);

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separates fields: ("ab", "c") and ("a", "bc") hash differently.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    pub(super) fn finish(&self) -> u64 {
        self.0
    }
}

/// Line endings normalised to CRLF (lone LF and lone CR become CRLF).
pub(super) fn crlf(bytes: &[u8]) -> Vec<u8> {
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

pub(super) fn crlf_str(s: &str) -> String {
    String::from_utf8_lossy(&crlf(s.as_bytes())).into_owned()
}

/// CRLF → LF.
pub(super) fn to_lf(bytes: &[u8]) -> Vec<u8> {
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
pub(super) fn base64_lines(data: &[u8], width: usize) -> String {
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
pub(super) fn quoted_printable(data: &[u8]) -> String {
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

pub(super) fn split_crlf(data: &[u8]) -> Vec<&[u8]> {
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
pub(super) fn subject_value(subject: &str) -> String {
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
pub(super) fn encode_words(text: &str) -> String {
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
pub(super) fn phrase(name: &str) -> String {
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
pub(super) fn param(name: &str, value: &str) -> String {
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
pub(super) fn fold(name: &str, value: &str) -> String {
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
