//! [`PecMessage::parse`]: one pass over a raw message that classifies it, reads its
//! `daticert.xml`, opens `postacert.eml` and checks the provider signature.

use std::borrow::Cow;
use std::ops::Range;

use chrono::{DateTime, FixedOffset};
use mailparse::ParsedMail;

use crate::classify::{Kind, ReceiptKind, TipoRicevuta};
use crate::daticert::Daticert;
use crate::message::{self, Mailbox, OriginalMessage};
use crate::mime;
use crate::signature::{self, SignatureReport, TrustAnchors, Verdict};
use crate::subject;

/// Bounds on what the parser accepts, so hostile input costs bounded time and memory.
/// MIME nesting is bounded by `mailparse` itself (100 levels); attached messages are opened only
/// on request, one level at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, in bytes (Aruba accepts 100 MB messages; base64 adds a third).
    pub max_message_bytes: usize,
    /// MIME leaf parts read in the original message; the rest is reported, not read.
    pub max_parts: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 200 * 1024 * 1024,
            max_parts: 5_000,
        }
    }
}

/// Work units (encoded-word starts × logical header line length) a message may cost to decode.
/// `mailparse` decodes RFC 2047 words in time quadratic in the line: about 2 ns a unit, so the
/// budget bounds a hostile message to a fraction of a second, while real headers (a few words
/// in a line of a few hundred bytes) use thousands.
const ENCODED_WORD_BUDGET: u64 = 100_000_000;

impl Limits {
    /// Refuses messages whose headers would cost `mailparse` unbounded time: many `=?` in very
    /// long (folded) header lines. Measures every logical line, bodies included (base64 and
    /// quoted-printable bodies never contain `=?`).
    pub(crate) fn check_encoded_words(&self, raw: &[u8]) -> Result<(), ParseError> {
        if encoded_word_cost(raw) > ENCODED_WORD_BUDGET {
            return Err(ParseError::Hostile(
                "header lines with too many RFC 2047 encoded words".to_owned(),
            ));
        }
        Ok(())
    }

    pub(crate) fn check_size(&self, size: usize) -> Result<(), ParseError> {
        if size > self.max_message_bytes {
            return Err(ParseError::TooLarge {
                size,
                limit: self.max_message_bytes,
            });
        }
        if size == 0 {
            return Err(ParseError::Empty);
        }
        Ok(())
    }
}

/// The sum, over logical lines, of `=?` starts × line length (saturating). A logical line ends
/// at an LF not followed by SP or HTAB and runs from the previous such LF (or the start of
/// `raw`). Only the lines around an `=?` are measured: the scan is `memchr`'s, most messages
/// have a handful of encoded words, and parsing every byte here cost a tenth of a parse.
fn encoded_word_cost(raw: &[u8]) -> u64 {
    let ends_line = |lf: usize| !matches!(raw.get(lf + 1), Some(b' ' | b'\t'));
    let mut total: u64 = 0;
    let (mut line, mut words) = (0..0, 0u64);
    for at in memchr::memmem::find_iter(raw, b"=?") {
        if at >= line.end {
            total = total.saturating_add(words.saturating_mul((line.end - line.start) as u64));
            let before = raw.get(line.end..at).unwrap_or_default();
            let start = memchr::memrchr_iter(b'\n', before)
                .map(|i| line.end + i)
                .find(|&lf| ends_line(lf))
                .unwrap_or(line.end);
            let after = raw.get(at..).unwrap_or_default();
            let end = memchr::memchr_iter(b'\n', after)
                .map(|i| at + i)
                .find(|&lf| ends_line(lf))
                .unwrap_or(raw.len());
            (line, words) = (start..end, 0);
        }
        words += 1;
    }
    total.saturating_add(words.saturating_mul((line.end - line.start) as u64))
}

/// Why a message could not be read at all. The caller still holds the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read message: {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("cannot read message: it is empty")]
    Empty,
    #[error("cannot read message: bad MIME structure: {0}")]
    Mime(String),
    #[error("cannot read message: it would take unbounded time to decode: {0}")]
    Hostile(String),
}

/// A parsed message: what it is, what it certifies, and what the human sent.
#[derive(Debug, Clone)]
pub struct PecMessage {
    pub kind: Kind,
    /// The kind the PEC headers claim (before the daticert check); `None` for non-PEC mail.
    pub header_kind: Option<Kind>,
    /// The top-level Subject, decoded (for PEC: with the provider prefix).
    pub raw_subject: String,
    /// The top-level From (for PEC: the provider's `posta-certificata@...` address).
    pub from: Option<Mailbox>,
    /// The top-level To and Cc.
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// The top-level Message-ID without angle brackets (for an envelope: the identificativo).
    pub message_id: Option<String>,
    /// The top-level Date.
    pub date: Option<DateTime<FixedOffset>>,
    /// `X-Riferimento-Message-ID`, as written (with angle brackets).
    pub riferimento_message_id: Option<String>,
    /// `X-Ricevuta`, as written.
    pub x_ricevuta: Option<String>,
    /// `X-Trasporto`, as written.
    pub x_trasporto: Option<String>,
    /// The avvenuta-consegna variant: daticert `ricevuta/@tipo`, else `X-TipoRicevuta`.
    pub tipo_ricevuta: Option<TipoRicevuta>,
    /// A virus notice (`X-VerificaSicurezza: errore` or daticert `errore="virus"`).
    pub virus: bool,
    /// Whether a `daticert.xml` part is present (even if unreadable).
    pub has_daticert: bool,
    pub daticert: Option<Daticert>,
    /// Whether a `postacert.eml` part is present.
    pub has_postacert: bool,
    /// Byte range of `postacert.eml` in the raw message, when stored untransformed.
    pub postacert_span: Option<Range<usize>>,
    /// The original message: `postacert.eml` for PEC, the message itself for non-PEC mail.
    pub original: Option<OriginalMessage>,
    pub signature: SignatureReport,
    /// Things a human should know (header/daticert disagreement, unreadable parts, ...).
    pub warnings: Vec<String>,
}

/// The facts of a receipt or notice, for matching it to what was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptFacts<'a> {
    pub kind: ReceiptKind,
    /// Our client Message-ID (daticert `msgid`, else `X-Riferimento-Message-ID`), no brackets.
    pub msgid: Option<&'a str>,
    /// The PEC identificativo of the message reported on.
    pub identificativo: Option<&'a str>,
    /// The recipients a per-recipient receipt is about.
    pub consegna: &'a [String],
    /// daticert `errore` (`nessuno`, `no-dest`, ...).
    pub errore: Option<&'a str>,
    pub errore_esteso: Option<&'a str>,
    pub data: Option<DateTime<FixedOffset>>,
    pub virus: bool,
}

impl PecMessage {
    /// Parses with the default limits and the PEC trust anchor.
    pub fn parse(raw: &[u8]) -> Result<PecMessage, ParseError> {
        PecMessage::parse_with(raw, &Limits::default(), &TrustAnchors::default())
    }

    pub fn parse_with(
        raw: &[u8],
        limits: &Limits,
        anchors: &TrustAnchors,
    ) -> Result<PecMessage, ParseError> {
        limits.check_size(raw.len())?;
        limits.check_encoded_words(raw)?;
        let mail = mailparse::parse_mail(raw).map_err(|e| ParseError::Mime(e.to_string()))?;
        let signed = mime::find_signed(&mail);
        let mut warnings = Vec::new();

        // PEC headers sit on the top-level message; a wrapper may carry them on the signed entity.
        let pec_headers = |m: &ParsedMail<'_>| {
            let t = mime::header(m, "X-Trasporto");
            let r = mime::header(m, "X-Ricevuta");
            (Kind::from_headers(t.as_deref(), r.as_deref()), t, r)
        };
        let (mut header_kind, mut x_trasporto, mut x_ricevuta) = pec_headers(&mail);
        if header_kind.is_none()
            && let Some(s) = signed.filter(|s| !std::ptr::eq(*s, &mail))
        {
            (header_kind, x_trasporto, x_ricevuta) = pec_headers(s);
        }
        let headers_of = |name: &str| {
            mime::header(&mail, name).or_else(|| signed.and_then(|s| mime::header(s, name)))
        };

        // Provider parts: daticert.xml and postacert.eml, in the signed content.
        let container = signed.and_then(|s| s.subparts.first()).unwrap_or(&mail);
        let mut parts = ProviderParts::default();
        if header_kind.is_some() {
            parts.find(container);
        }

        let has_daticert = parts.daticert.is_some();
        let daticert = parts.daticert.and_then(|p| {
            let xml = body_bytes(p);
            match Daticert::parse(&xml) {
                Ok(d) => Some(d),
                Err(e) => {
                    warnings.push(e.to_string());
                    None
                }
            }
        });

        let mut kind = header_kind.unwrap_or(Kind::NonPec);
        if let (Some(hk), Some(d)) = (header_kind, &daticert)
            && let Some(dk) = Kind::from_daticert_tipo(&d.tipo)
            && dk != hk
            && !(hk == Kind::Anomaly && dk == Kind::Envelope)
        {
            warnings.push(format!(
                "the headers say {} but daticert.xml says {}: trusting the signed daticert.xml",
                hk.as_str(),
                dk.as_str()
            ));
            kind = dk;
        }

        let has_postacert = parts.postacert.is_some();
        let mut postacert_span = None;
        let original = if let Some(p) = parts.postacert {
            let bytes = body_bytes(p);
            if let Cow::Borrowed(slice) = &bytes {
                postacert_span = span_of(raw, slice);
            }
            let inner = match limits.check_encoded_words(&bytes) {
                // A base64 postacert.eml was not covered by the scan of the whole message.
                Err(e) => Err(e.to_string()),
                Ok(()) => mailparse::parse_mail(&bytes).map_err(|e| e.to_string()),
            };
            match inner {
                Ok(inner) => Some(OriginalMessage::from_parsed(&inner, limits)),
                Err(e) => {
                    warnings.push(format!("cannot read postacert.eml: {e}"));
                    None
                }
            }
        } else if kind == Kind::NonPec {
            Some(OriginalMessage::from_parsed(&mail, limits))
        } else {
            None
        };

        let tipo_ricevuta = daticert
            .as_ref()
            .and_then(|d| d.ricevuta.as_deref())
            .or(headers_of("X-TipoRicevuta").as_deref())
            .map(TipoRicevuta::from_value);
        let virus = headers_of("X-VerificaSicurezza")
            .is_some_and(|v| v.eq_ignore_ascii_case("errore"))
            || daticert
                .as_ref()
                .is_some_and(|d| d.errore.eq_ignore_ascii_case("virus"));

        let signature = match signed {
            Some(s) => signature::verify_signed(s, anchors),
            None => SignatureReport {
                verdict: Verdict::Missing,
                signer: None,
                signer_email: None,
                signing_time: None,
                reason: Some("no multipart/signed entity".to_owned()),
            },
        };

        Ok(PecMessage {
            kind,
            header_kind,
            raw_subject: mail
                .headers
                .iter()
                .find(|h| h.get_key_ref().eq_ignore_ascii_case("Subject"))
                .map(|h| h.get_value().trim().to_owned())
                .unwrap_or_default(),
            from: message::mailboxes(&mail, "From").into_iter().next(),
            to: message::mailboxes(&mail, "To"),
            cc: message::mailboxes(&mail, "Cc"),
            message_id: mime::header(&mail, "Message-ID")
                .and_then(|v| message::msgids(&v).into_iter().next()),
            date: mime::header(&mail, "Date").and_then(|d| message::parse_date(&d)),
            riferimento_message_id: headers_of("X-Riferimento-Message-ID"),
            x_ricevuta,
            x_trasporto,
            tipo_ricevuta,
            virus,
            has_daticert,
            daticert,
            has_postacert,
            postacert_span,
            original,
            signature,
            warnings,
        })
    }

    /// The real sender: daticert `mittente`, else the original's From, else the top-level From
    /// (for PEC, the address after "Per conto di:").
    pub fn sender(&self) -> Option<String> {
        if let Some(m) = self.daticert.as_ref().and_then(|d| d.mittente.clone()) {
            return Some(m);
        }
        if let Some(s) = self.original.as_ref().and_then(|o| o.sender()) {
            return Some(s.to_owned());
        }
        let from = self.from.as_ref()?;
        if self.kind.is_pec()
            && let Some(addr) = from.name.as_deref().and_then(per_conto_di)
        {
            return Some(addr);
        }
        Some(from.address.clone())
    }

    /// The subject shown to humans: daticert `oggetto`, else the original's subject, else the
    /// top-level subject with one provider prefix stripped.
    pub fn subject(&self) -> String {
        if let Some(o) = self.daticert.as_ref().and_then(|d| d.oggetto.clone()) {
            return o;
        }
        if let Some(s) = self.original.as_ref().and_then(|o| o.subject.clone()) {
            return s;
        }
        if self.kind.is_pec() {
            subject::strip_prefix(&self.raw_subject).to_owned()
        } else {
            self.raw_subject.clone()
        }
    }

    /// The original recipients: daticert `destinatari`, else the original's To + Cc, else the
    /// top-level To + Cc.
    pub fn recipients(&self) -> Vec<String> {
        if let Some(d) = self.daticert.as_ref().filter(|d| !d.destinatari.is_empty()) {
            return d.destinatari.iter().map(|x| x.address.clone()).collect();
        }
        if let Some(o) = &self.original {
            let r = o.recipients();
            if !r.is_empty() {
                return r;
            }
        }
        self.to
            .iter()
            .chain(&self.cc)
            .map(|m| m.address.clone())
            .collect()
    }

    /// The PEC identificativo (daticert), for envelopes also the top-level Message-ID.
    pub fn identificativo(&self) -> Option<&str> {
        self.daticert
            .as_ref()
            .and_then(|d| d.identificativo.as_deref())
            .or(match self.kind {
                Kind::Envelope | Kind::Anomaly => self.message_id.as_deref(),
                _ => None,
            })
    }

    /// The address replies go to: daticert `risposte`, else the original's Reply-To or sender.
    pub fn reply_to(&self) -> Option<String> {
        self.daticert
            .as_ref()
            .and_then(|d| d.risposte.clone())
            .or_else(|| {
                self.original
                    .as_ref()
                    .and_then(|o| o.reply_to.first().map(|m| m.address.clone()))
            })
            .or_else(|| self.sender())
    }

    /// For receipts and notices, what they certify.
    pub fn receipt(&self) -> Option<ReceiptFacts<'_>> {
        let Kind::Receipt(kind) = self.kind else {
            return None;
        };
        let d = self.daticert.as_ref();
        Some(ReceiptFacts {
            kind,
            msgid: d
                .and_then(|d| d.msgid.as_deref())
                .or(self.riferimento_message_id.as_deref())
                .map(crate::normalize_msgid),
            identificativo: d.and_then(|d| d.identificativo.as_deref()),
            consegna: d.map(|d| d.consegna.as_slice()).unwrap_or(&[]),
            errore: d.map(|d| d.errore.as_str()),
            errore_esteso: d.and_then(|d| d.errore_esteso.as_deref()),
            data: d.and_then(|d| d.data),
            virus: self.virus,
        })
    }
}

/// `"Per conto di: mario@pec.it"` → `mario@pec.it`.
fn per_conto_di(display: &str) -> Option<String> {
    let rest = display.trim().trim_matches('"');
    let idx = rest.to_ascii_lowercase().find("per conto di:")?;
    let addr = rest[idx + "per conto di:".len()..].trim();
    (addr.contains('@')).then(|| addr.to_owned())
}

#[derive(Default)]
struct ProviderParts<'m, 'a> {
    daticert: Option<&'m ParsedMail<'a>>,
    postacert: Option<&'m ParsedMail<'a>>,
}

impl<'m, 'a> ProviderParts<'m, 'a> {
    /// Looks through `multipart/*` (never inside attached messages) for the provider's parts.
    fn find(&mut self, part: &'m ParsedMail<'a>) {
        let mimetype = mime::mimetype(part);
        if mimetype.starts_with("multipart/") {
            for sub in &part.subparts {
                self.find(sub);
            }
            return;
        }
        let name = mime::filename(part).map(|n| n.to_ascii_lowercase());
        if self.daticert.is_none() && name.as_deref() == Some("daticert.xml") {
            self.daticert = Some(part);
        } else if self.postacert.is_none()
            && (name.as_deref() == Some("postacert.eml")
                || (name.is_none() && mimetype == "message/rfc822"))
        {
            self.postacert = Some(part);
        }
    }
}

/// A part's body with its transfer encoding undone (the raw body when it cannot be decoded).
fn body_bytes<'a>(part: &'a ParsedMail<'a>) -> Cow<'a, [u8]> {
    mime::decoded_body(part).unwrap_or_else(|(_, raw)| Cow::Borrowed(raw))
}

/// The byte range of `slice` inside `whole`, when it is a sub-slice of it.
fn span_of(whole: &[u8], slice: &[u8]) -> Option<Range<usize>> {
    let start = (slice.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(slice.len())?;
    (end <= whole.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_conto_di_reads_the_real_sender() {
        assert_eq!(
            per_conto_di("Per conto di: sdi03@pec.fatturapa.it").as_deref(),
            Some("sdi03@pec.fatturapa.it")
        );
        assert_eq!(
            per_conto_di("\"per conto di: a@b.it\"").as_deref(),
            Some("a@b.it")
        );
        assert_eq!(per_conto_di("Mario"), None);
    }

    #[test]
    fn empty_and_oversized_messages_are_typed_errors() {
        assert_eq!(PecMessage::parse(b"").unwrap_err(), ParseError::Empty);
        let limits = Limits {
            max_message_bytes: 3,
            ..Limits::default()
        };
        assert!(matches!(
            PecMessage::parse_with(b"abcd", &limits, &TrustAnchors::empty()),
            Err(ParseError::TooLarge { size: 4, limit: 3 })
        ));
    }

    /// The cost as first written: every byte, one logical line after the other.
    fn encoded_word_cost_bytewise(raw: &[u8]) -> u64 {
        let mut total: u64 = 0;
        let (mut words, mut len) = (0u64, 0u64);
        for (i, &byte) in raw.iter().enumerate() {
            match byte {
                b'\n' if !matches!(raw.get(i + 1), Some(b' ' | b'\t')) => {
                    total = total.saturating_add(words.saturating_mul(len));
                    (words, len) = (0, 0);
                }
                b'=' if raw.get(i + 1) == Some(&b'?') => words += 1,
                _ => {}
            }
            len += 1;
        }
        total.saturating_add(words.saturating_mul(len))
    }

    #[test]
    fn encoded_word_cost_counts_folded_lines_once() {
        let raw = b"Subject: =?a?= =?b?=\r\n\t=?c?=\r\nTo: x\r\n\r\nbody =?\n";
        assert_eq!(encoded_word_cost(raw), encoded_word_cost_bytewise(raw));
        // Subject's logical line is 29 bytes with 3 words; the body line 8 bytes with 1.
        assert_eq!(encoded_word_cost(raw), 3 * 29 + 8);
        assert_eq!(encoded_word_cost(b""), 0);
        assert_eq!(encoded_word_cost(b"no words\n"), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]
        #[test]
        fn encoded_word_cost_matches_bytewise(
            raw in proptest::collection::vec(
                proptest::sample::select(vec![b'=', b'?', b'\n', b'\r', b' ', b'\t', b'a']),
                0..600,
            )
        ) {
            proptest::prop_assert_eq!(encoded_word_cost(&raw), encoded_word_cost_bytewise(&raw));
        }
    }
}
