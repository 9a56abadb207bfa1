//! Making text inert before it goes into a Zendesk comment.
//!
//! Zendesk renders `{{…}}` placeholders in comments authored by an agent and strips unknown ones
//! (reference §2.6), so PEC text we copy into an internal note could change or vanish. A zero-width
//! space between the two braces (`{&#8203;{`) keeps the text as the reader sees it while the
//! placeholder parser no longer matches it.

/// The HTML entity put between two identical braces.
const BREAK: &str = "&#8203;";

/// Breaks every `{{` and `}}` in `html` with a zero-width space, so Zendesk does not render or
/// strip them as placeholders. Everything else is left as it is.
pub fn escape_placeholders(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut chars = html.chars().peekable();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if (ch == '{' || ch == '}') && chars.peek() == Some(&ch) {
            out.push_str(BREAK);
        }
    }
    out
}

/// Plain text (e.g. a PEC body) as HTML for `html_body`: markup characters escaped, line breaks
/// kept as `<br>`, placeholders made inert.
pub fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => {}
            '\n' => out.push_str("<br>\n"),
            _ => out.push(ch),
        }
    }
    escape_placeholders(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_double_braces() {
        assert_eq!(
            escape_placeholders("{{ticket.id}}"),
            "{&#8203;{ticket.id}&#8203;}"
        );
        assert_eq!(
            escape_placeholders("{{{x}}}"),
            "{&#8203;{&#8203;{x}&#8203;}&#8203;}"
        );
        assert_eq!(escape_placeholders("a { b } {c}"), "a { b } {c}");
        assert_eq!(escape_placeholders(""), "");
    }

    #[test]
    fn escaping_leaves_no_placeholder_and_loses_no_text() {
        // Every string up to length 6 over an alphabet that stresses the braces.
        let alphabet = ['{', '}', 'a', ' '];
        let mut inputs = vec![String::new()];
        for _ in 0..6 {
            let longer: Vec<String> = inputs
                .iter()
                .filter(|s| s.len() == inputs.last().map_or(0, String::len))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(longer);
        }
        assert!(inputs.len() > 4000);
        for input in inputs {
            let escaped = escape_placeholders(&input);
            assert!(
                !escaped.contains("{{") && !escaped.contains("}}"),
                "{input:?} → {escaped:?}"
            );
            assert_eq!(escaped.replace(BREAK, ""), input);
        }
    }

    #[test]
    fn text_becomes_safe_html() {
        assert_eq!(
            text_to_html("Fattura <n. 1> & {{dc.x}}\r\nciao"),
            "Fattura &lt;n. 1&gt; &amp; {&#8203;{dc.x}&#8203;}<br>\nciao"
        );
    }
}
