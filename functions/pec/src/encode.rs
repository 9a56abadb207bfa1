//! The two text encodings every crate of the connector writes: HTML (and XML) escaping, and
//! lower-case hexadecimal. One home each, so a fix lands everywhere.

use std::fmt::Write;

/// `text` with the characters that are markup in HTML and XML text and attribute values
/// (`&`, `<`, `>`, `"`) written as entities; everything else as it is.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// `bytes` as lower-case hexadecimal, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_becomes_entities_and_the_rest_stays() {
        assert_eq!(
            escape_html(r#"<a href="x">Rossi & figli</a> è 'qui'"#),
            "&lt;a href=&quot;x&quot;&gt;Rossi &amp; figli&lt;/a&gt; è 'qui'"
        );
        assert_eq!(escape_html(""), "");
        assert_eq!(escape_html("&amp;"), "&amp;amp;");
    }

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
    }
}
