//! A reader of `template.yaml` for the template tests.
//!
//! The template uses CloudFormation tags (`!Ref`, `!Sub`, `!GetAtt`) that strict YAML parsers
//! refuse, so [`entries`] reads it line by line, by indentation: enough YAML for a SAM template's
//! block mappings and sequences. Flow mappings (`{...}`) are not read; a test that finds a field
//! missing fails naming it.

// Each test file uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;

/// One `key: value` of a YAML document, or one plain sequence item.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The keys leading to it, itself last. The n-th item of a sequence is the key `-n`.
    pub keys: Vec<String>,
    /// The value without quotes or a trailing comment; empty for a key that opens a block.
    pub value: String,
    /// Its line, from 1.
    pub line: usize,
    /// The comment lines right above it (without `#`).
    pub comments: Vec<String>,
}

/// A key open at the current line.
struct Open {
    indent: usize,
    key: String,
    /// A sequence item (`-n`), not a mapping key.
    item: bool,
}

fn keys_of(open: &[Open]) -> Vec<String> {
    open.iter().map(|o| o.key.clone()).collect()
}

/// Every entry of a YAML document, in order. Block scalars (`|`, `>`) are skipped.
pub fn entries(yaml: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    // How many items each sequence has had so far, by the keys holding it.
    let mut items: HashMap<Vec<String>, usize> = HashMap::new();
    // The indentation of a block scalar's key while its lines are skipped.
    let mut scalar_of: Option<usize> = None;
    let mut comments: Vec<String> = Vec::new();
    for (n, line) in yaml.lines().enumerate() {
        let text = line.trim_start();
        let mut indent = line.len() - text.len();
        if text.is_empty() {
            continue;
        }
        if let Some(key_indent) = scalar_of {
            if indent > key_indent {
                continue;
            }
            scalar_of = None;
        }
        if let Some(comment) = text.strip_prefix('#') {
            comments.push(comment.trim().to_owned());
            continue;
        }
        let comments = std::mem::take(&mut comments);
        if text == "---" {
            open.clear();
            continue;
        }
        let mut text = text;
        // A sequence item: a `-n` key; a sequence may be as indented as the key holding it.
        while let Some(rest) = text
            .strip_prefix("- ")
            .or_else(|| text.strip_prefix('-').filter(|r| r.is_empty()))
        {
            open.retain(|o| o.indent < indent || (o.indent == indent && !o.item));
            let count = items.entry(keys_of(&open)).or_insert(0);
            open.push(Open {
                indent,
                key: format!("-{count}"),
                item: true,
            });
            *count += 1;
            let item = rest.trim_start();
            indent += text.len() - item.len();
            text = item;
        }
        open.retain(|o| o.indent < indent);
        let Some((key, value)) = key_value(text) else {
            // A plain scalar: the value of the sequence item it follows.
            if open.last().is_some_and(|o| o.item) && !text.is_empty() {
                entries.push(Entry {
                    keys: keys_of(&open),
                    value: scalar(text),
                    line: n + 1,
                    comments,
                });
            }
            continue;
        };
        if value.starts_with('|') || value.starts_with('>') {
            scalar_of = Some(indent);
        }
        let mut keys = keys_of(&open);
        keys.push(key.clone());
        entries.push(Entry {
            keys,
            value,
            line: n + 1,
            comments,
        });
        open.push(Open {
            indent,
            key,
            item: false,
        });
    }
    entries
}

/// `key: value`, or `None` for a plain scalar.
fn key_value(text: &str) -> Option<(String, String)> {
    let (key, value) = match text.split_once(": ") {
        Some((key, value)) => (key, value.trim()),
        None => (text.strip_suffix(':')?, ""),
    };
    Some((unquote(key.trim()), scalar(value)))
}

/// A scalar without quotes or a trailing comment.
fn scalar(value: &str) -> String {
    if value.starts_with('"') || value.starts_with('\'') {
        unquote(value)
    } else {
        value
            .split(" #")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

pub fn unquote(s: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.split(q).next()) {
            return inner.to_owned();
        }
    }
    s.to_owned()
}

/// The repository's `template.yaml`.
pub fn template() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}
