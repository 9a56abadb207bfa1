//! Charset decoding with the fallbacks real mail needs: a declared charset when it is known,
//! UTF-8 when the bytes are valid UTF-8, windows-1252 otherwise (iso-8859-1 labels are read as
//! windows-1252, its superset, as the WHATWG Encoding Standard does: mislabelled windows-1252 is
//! common in Italian mail).

use encoding_rs::{Encoding, UTF_8, WINDOWS_1252};

/// Decodes `bytes` declared as `charset` into a `String`. Never fails.
pub(crate) fn decode(bytes: &[u8], charset: &str) -> String {
    let label = charset.trim().trim_matches('"');
    let declared = Encoding::for_label(label.as_bytes());
    match declared {
        Some(enc) if enc != UTF_8 => enc.decode_without_bom_handling(bytes).0.into_owned(),
        // UTF-8, US-ASCII (maps to windows-1252 in encoding_rs) or unknown: prefer UTF-8 when valid.
        _ => match std::str::from_utf8(bytes) {
            Ok(s) => s.to_owned(),
            Err(_) if declared == Some(UTF_8) && !looks_like_latin(bytes) => {
                String::from_utf8_lossy(bytes).into_owned()
            }
            Err(_) => WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
                .into_owned(),
        },
    }
}

/// Whether invalid UTF-8 looks like single-byte Latin text (high bytes not forming sequences).
fn looks_like_latin(bytes: &[u8]) -> bool {
    let high = bytes.iter().filter(|b| **b >= 0x80).count();
    let lossy = String::from_utf8_lossy(bytes);
    let replaced = lossy.chars().filter(|c| *c == '\u{FFFD}').count();
    high > 0 && replaced * 2 >= high
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_declared_and_mislabelled_charsets() {
        assert_eq!(decode(b"perch\xe9", "iso-8859-1"), "perché");
        // windows-1252 euro sign labelled iso-8859-1.
        assert_eq!(decode(b"10 \x80", "ISO-8859-1"), "10 €");
        assert_eq!(decode("perché €".as_bytes(), "utf-8"), "perché €");
        // Latin bytes labelled UTF-8.
        assert_eq!(decode(b"perch\xe9", "utf-8"), "perché");
        // Unknown label: UTF-8 if valid, else windows-1252.
        assert_eq!(decode("già".as_bytes(), "x-unknown"), "già");
        assert_eq!(decode(b"gi\xe0", "x-unknown"), "già");
        assert_eq!(decode(b"plain", "us-ascii"), "plain");
    }
}
