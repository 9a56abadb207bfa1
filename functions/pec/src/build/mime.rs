//! MIME writing: parts, bodies, headers and boundaries.

use super::*;

#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Body,
}

#[derive(Debug, Clone)]
pub(super) enum Body {
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
    pub(super) fn leaf(headers: Vec<(String, String)>, body: Vec<u8>) -> Part {
        Part {
            headers,
            body: Body::Bytes(body),
        }
    }

    pub(super) fn raw(entity: Vec<u8>) -> Part {
        Part {
            headers: Vec::new(),
            body: Body::Raw(entity),
        }
    }

    /// A rendered entity split back into header fields and body.
    pub(super) fn rendered_entity(entity: &[u8]) -> Part {
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

    pub(super) fn multipart(subtype: &str, boundary: String, parts: Vec<Part>) -> Part {
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

    pub(super) fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_part(&mut out, self);
        out
    }
}

pub(super) fn write_part(out: &mut Vec<u8>, part: &Part) {
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
pub(super) fn write_body(out: &mut Vec<u8>, body: &Body) {
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

pub(super) fn write_headers(out: &mut Vec<u8>, headers: &[(String, String)]) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Boundaries of ordinary mail: `----=_Part_<n>_<seed>`.
pub(super) struct Boundaries {
    pub(super) seed: u64,
    pub(super) n: u32,
}

impl Boundaries {
    pub(super) fn new(seed: u64) -> Boundaries {
        Boundaries { seed, n: 0 }
    }

    pub(super) fn next(&mut self) -> String {
        self.n += 1;
        format!("----=_Part_{}_{:016x}", self.n, self.seed)
    }
}

/// Boundaries of provider messages, in the shape shared by Aruba, Sogei and Namirial:
/// `----------=_<unix time>-<process>-<counter>`.
pub(super) struct ProviderBoundaries {
    pub(super) time: i64,
    pub(super) process: u64,
    pub(super) counter: u64,
}

impl ProviderBoundaries {
    pub(super) fn new(time: i64, seed: u64) -> ProviderBoundaries {
        ProviderBoundaries {
            time,
            process: seed % 90_000 + 10_000,
            counter: (seed >> 20) % 9_000 + 100,
        }
    }

    pub(super) fn next(&mut self) -> String {
        self.counter += 1;
        format!(
            "----------=_{}-{}-{}",
            self.time, self.process, self.counter
        )
    }
}
