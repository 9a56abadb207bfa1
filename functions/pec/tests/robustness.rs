//! Robustness of the parser on hostile input: whatever the bytes, `PecMessage::parse` returns
//! (quickly) a value or a typed `ParseError`, never panics, never overflows the stack; a value
//! always has a known kind and a readable report; without PEC headers a message is `non-pec`.
//! The bytes are only borrowed, so the caller still holds them whatever the outcome.
//!
//! The envelope used for truncation and body mutation is written here (shaped like an Aruba
//! ricevuta di accettazione), not copied from the samples.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use pec::message::OriginalMessage;
use pec::report::Report;
use pec::signature::{SigningIdentity, sign_detached};
use pec::{Daticert, Kind, Limits, ParseError, PecMessage, ReceiptKind};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// The most a single parse may take, even unoptimised, for inputs up to about 1 MB.
const TIME_BOUND: Duration = Duration::from_secs(2);
/// tokio's default worker thread stack.
const TOKIO_STACK: usize = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// The checks every parse must pass

/// Parses `raw` and checks the invariants; returns the outcome for further checks.
fn check(raw: &[u8]) -> Result<PecMessage, ParseError> {
    let started = Instant::now();
    let outcome = PecMessage::parse(raw);
    let elapsed = started.elapsed();
    assert!(
        elapsed < TIME_BOUND,
        "parsing {} bytes took {elapsed:?}",
        raw.len()
    );
    match &outcome {
        Ok(msg) => check_message(msg, raw),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    outcome
}

fn check_message(msg: &PecMessage, raw: &[u8]) {
    let report = Report::from_message(msg, "input.eml");
    let known = ["envelope", "anomaly", "non-pec"]
        .into_iter()
        .chain(ReceiptKind::ALL.map(ReceiptKind::as_str));
    assert!(
        known.into_iter().any(|k| k == report.kind),
        "unknown kind {:?}",
        report.kind
    );
    assert!(["valid", "invalid", "untrusted", "missing"].contains(&report.signature.as_str()));
    if msg.header_kind.is_none() {
        assert_eq!(msg.kind, Kind::NonPec, "a kind without PEC headers");
    }
    if let Some(span) = &msg.postacert_span {
        assert!(span.start <= span.end && span.end <= raw.len());
    }
    let _ = msg.receipt();
    let _ = serde_json::to_string(&report).expect("a report serialises");
    for attachment in msg.original.iter().flat_map(|o| &o.attachments) {
        if attachment.is_message() {
            let _ = attachment.as_message();
        }
    }
}

fn check_daticert(xml: &[u8]) -> Option<Daticert> {
    let started = Instant::now();
    let outcome = Daticert::parse(xml);
    assert!(
        started.elapsed() < TIME_BOUND,
        "daticert of {} bytes",
        xml.len()
    );
    outcome.ok()
}

/// Whether the bytes name a PEC header anywhere (any case).
fn mentions_pec_headers(raw: &[u8]) -> bool {
    let lower = raw.to_ascii_lowercase();
    [&b"x-trasporto"[..], b"x-ricevuta"]
        .iter()
        .any(|needle| lower.windows(needle.len()).any(|w| w == *needle))
}

/// Runs `f` on a thread with tokio's worker stack, so a deep recursion overflows as it would there.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(TOKIO_STACK)
        .spawn(f)
        .expect("spawn a thread")
        .join()
        .expect("no panic or stack overflow")
}

// ---------------------------------------------------------------------------------------------
// A provider-shaped message, written here

const DATICERT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="accettazione" errore="nessuno">
    <intestazione>
        <mittente>protocollo@pec.comune.esempio.it</mittente>
        <destinatari tipo="certificato">fornitore@pec.esempio.it</destinatari>
        <risposte>protocollo@pec.comune.esempio.it</risposte>
        <oggetto>Determina n. 42/2024</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>GESTORE DI PROVA S.p.A.</gestore-emittente>
        <data zona="+0100">
            <giorno>05/02/2024</giorno>
            <ora>10:15:00</ora>
        </data>
        <identificativo>opec0001.20240205101500.00001.01.1.1@pec.gestore.esempio.it</identificativo>
        <msgid>&lt;c0ffee.42@client.esempio.it&gt;</msgid>
    </dati>
</postacert>
"#;

/// The parts of a provider message that the tests vary.
struct Busta {
    /// PEC header lines (`X-Ricevuta: accettazione`), each without its line end.
    pec_headers: Vec<Vec<u8>>,
    /// `Content-Type` parameters and transfer encoding of the notice text, and its body as written.
    text_charset: Vec<u8>,
    text_encoding: String,
    text: Vec<u8>,
    /// Transfer encoding and body (as written) of `daticert.xml`.
    daticert_encoding: String,
    daticert: Vec<u8>,
    /// The original message, as written, for a busta di trasporto.
    postacert: Option<Vec<u8>>,
}

impl Busta {
    fn accettazione() -> Busta {
        Busta {
            pec_headers: vec![b"X-Ricevuta: accettazione".to_vec()],
            text_charset: b"iso-8859-1".to_vec(),
            text_encoding: "quoted-printable".to_owned(),
            text: b"Ricevuta di accettazione\r\n\r\nIl giorno 05/02/2024 alle ore 10:15:00 (+0100) il messaggio\r\n\"Determina n. 42/2024\" proveniente da \"protocollo@pec.comune.esempio.it\"\r\n=E8 stato accettato dal sistema ed inoltrato.\r\n".to_vec(),
            daticert_encoding: "base64".to_owned(),
            daticert: base64_lines(DATICERT.as_bytes()),
            postacert: None,
        }
    }

    fn trasporto() -> Busta {
        let original = concat!(
            "From: Ufficio Protocollo <protocollo@pec.comune.esempio.it>\r\n",
            "To: fornitore@pec.esempio.it\r\n",
            "Subject: =?UTF-8?Q?Determina_n._42/2024_=E2=80=93_perch=C3=A9?=\r\n",
            "Date: Mon, 5 Feb 2024 10:14:58 +0100\r\n",
            "Message-ID: <c0ffee.42@client.esempio.it>\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: multipart/mixed; boundary=\"orig\"\r\n",
            "\r\n",
            "--orig\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Content-Transfer-Encoding: 8bit\r\n",
            "\r\n",
            "In allegato la determina. Perch\u{e9} s\u{ec}.\r\n",
            "--orig\r\n",
            "Content-Type: application/pdf; name=\"determina.pdf\"\r\n",
            "Content-Disposition: attachment; filename*=UTF-8''determina%20n.%2042.pdf\r\n",
            "Content-Transfer-Encoding: base64\r\n",
            "\r\n",
            "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n",
            "--orig--\r\n",
        );
        Busta {
            pec_headers: vec![
                b"X-Trasporto: posta-certificata".to_vec(),
                b"X-TipoRicevuta: completa".to_vec(),
            ],
            daticert: base64_lines(
                DATICERT
                    .replace("accettazione", "posta-certificata")
                    .as_bytes(),
            ),
            postacert: Some(original.as_bytes().to_vec()),
            ..Busta::accettazione()
        }
    }

    /// The signed content: the `multipart/mixed` entity.
    fn content(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"Content-Type: multipart/mixed; boundary=\"----------=_1707124500-7-1\"\r\nContent-Transfer-Encoding: binary\r\nMIME-Version: 1.0\r\n\r\n");
        out.extend_from_slice(b"------------=_1707124500-7-1\r\nContent-Type: multipart/alternative;\r\n boundary=\"----------=_1707124500-7-2\"\r\nContent-Transfer-Encoding: binary\r\n\r\n");
        out.extend_from_slice(
            b"------------=_1707124500-7-2\r\nContent-Type: text/plain; charset=\"",
        );
        out.extend_from_slice(&self.text_charset);
        out.extend_from_slice(b"\"\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: ");
        out.extend_from_slice(self.text_encoding.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.text);
        out.extend_from_slice(b"\r\n------------=_1707124500-7-2\r\nContent-Type: text/html; charset=\"iso-8859-1\"\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><h3>Ricevuta di accettazione</h3><p>Il messaggio =E8 stato accettato.</p></body></html>\r\n\r\n------------=_1707124500-7-2--\r\n\r\n");
        if let Some(original) = &self.postacert {
            out.extend_from_slice(b"------------=_1707124500-7-1\r\nContent-Type: message/rfc822; name=\"postacert.eml\"\r\nContent-Disposition: inline; filename=\"postacert.eml\"\r\n\r\n");
            out.extend_from_slice(original);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"------------=_1707124500-7-1\r\nContent-Type: application/xml; name=\"daticert.xml\"\r\nContent-Disposition: inline; filename=\"daticert.xml\"\r\nContent-Transfer-Encoding: ");
        out.extend_from_slice(self.daticert_encoding.as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&self.daticert);
        out.extend_from_slice(b"\r\n------------=_1707124500-7-1--\r\n");
        out
    }

    /// The whole message around `content`, with `p7s` (DER) as the signature part.
    fn render(&self, content: &[u8], p7s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(b"Return-Path: <posta-certificata@pec.gestore.esempio.it>\r\nReceived: from mx01.pec.gestore.esempio.it (localhost [127.0.0.1])\r\n\tby mx01.pec.gestore.esempio.it (lmtpd) with LMTP id 4242.001;\r\n\tMon, 05 Feb 2024 10:15:01 +0100 (CET)\r\nSubject: ACCETTAZIONE: Determina n. 42/2024\r\nX-Riferimento-Message-ID: <c0ffee.42@client.esempio.it>\r\nDate: Mon, 05 Feb 2024 10:15:00 +0100\r\nTo: protocollo@pec.comune.esempio.it\r\n");
        for line in &self.pec_headers {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"From: posta-certificata@pec.gestore.esempio.it\r\nMIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----5A1B2C3D4E5F60718293A4B5C6D7E8F9\"\r\nMessage-ID: <opec0001.20240205101500.00001.01.1.1@pec.gestore.esempio.it>\r\n\r\nThis is an S/MIME signed message\r\n\r\n------5A1B2C3D4E5F60718293A4B5C6D7E8F9\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n------5A1B2C3D4E5F60718293A4B5C6D7E8F9\r\nContent-Type: application/x-pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n");
        out.extend_from_slice(&base64_lines(p7s));
        out.extend_from_slice(b"\r\n------5A1B2C3D4E5F60718293A4B5C6D7E8F9--\r\n\r\n");
        out
    }

    /// With a placeholder signature (`invalid`).
    fn unsigned(&self) -> Vec<u8> {
        self.render(&self.content(), b"\x30\x80placeholder")
    }

    /// Signed by the sandbox provider (not a PEC trust anchor: `untrusted` when intact).
    fn signed(&self) -> Vec<u8> {
        let content = self.content();
        let time = chrono::DateTime::parse_from_rfc3339("2024-02-05T09:15:00Z")
            .expect("a time")
            .to_utc();
        let p7s = sign_detached(&content, &SigningIdentity::sandbox(), time).expect("sign");
        self.render(&content, &p7s)
    }
}

fn base64_lines(data: &[u8]) -> Vec<u8> {
    let encoded = BASE64.encode(data);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38);
    for (i, chunk) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

fn to_lf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &b) in raw.iter().enumerate() {
        if !(b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Deterministic cases

#[test]
fn the_template_envelopes_parse_as_they_should() {
    let msg = check(&Busta::accettazione().signed()).expect("parses");
    assert_eq!(msg.kind, Kind::Receipt(ReceiptKind::Accettazione));
    assert!(msg.daticert.is_some(), "{:?}", msg.warnings);
    assert_eq!(
        msg.signature.verdict.as_str(),
        "untrusted",
        "{:?}",
        msg.signature.reason
    );

    let msg = check(&to_lf(&Busta::trasporto().signed())).expect("parses");
    assert_eq!(msg.kind, Kind::Envelope);
    let original = msg.original.expect("postacert.eml is read");
    assert_eq!(original.attachments.len(), 1);
    assert_eq!(
        msg.signature.verdict.as_str(),
        "untrusted",
        "{:?}",
        msg.signature.reason
    );
}

/// Every prefix of a signed envelope: before the PEC header line is complete, whatever the
/// parser makes of it; after it, the kind the headers say (or, when the cut leaves a part's
/// header block followed by a lone CR, mailparse's typed error for the whole message).
#[test]
fn truncation_at_every_byte_keeps_the_header_kind() {
    for (busta, header, kind) in [
        (
            Busta::accettazione(),
            &b"X-Ricevuta: accettazione\r\n"[..],
            Kind::Receipt(ReceiptKind::Accettazione),
        ),
        (
            Busta::trasporto(),
            &b"X-Trasporto: posta-certificata\r\n"[..],
            Kind::Envelope,
        ),
    ] {
        let crlf = busta.signed();
        for (raw, header) in [
            (crlf.clone(), header.to_vec()),
            (to_lf(&crlf), to_lf(header)),
        ] {
            let classified_from = find(&raw, &header).expect("the header is there") + header.len();
            for cut in 0..=raw.len() {
                match check(&raw[..cut]) {
                    Ok(msg) if cut >= classified_from => {
                        assert_eq!(msg.kind, kind, "cut at {cut}: {:?}", msg.warnings)
                    }
                    Ok(_) => {}
                    Err(ParseError::Empty) => assert_eq!(cut, 0),
                    // mailparse refuses a header block followed by a lone CR, in any part.
                    Err(e) => assert!(
                        cut < classified_from || raw[..cut].ends_with(b"\r\n\r"),
                        "cut at {cut}: {e}"
                    ),
                }
            }
        }
    }
}

fn nested(levels: usize, boundary: impl Fn(usize) -> String, pec: bool) -> Vec<u8> {
    let mut raw = b"From: a@esempio.it\r\nTo: b@esempio.it\r\nSubject: nidi\r\n".to_vec();
    if pec {
        raw.extend_from_slice(b"X-Trasporto: posta-certificata\r\n");
    }
    for level in 0..levels {
        let b = boundary(level);
        raw.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\npreambolo\r\n--{b}\r\n"
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\nin fondo\r\n");
    for level in (0..levels).rev() {
        let b = boundary(level);
        raw.extend_from_slice(
            format!("\r\n--{b}\r\nContent-Type: text/plain\r\n\r\nfratello {level}\r\n--{b}--\r\n")
                .as_bytes(),
        );
    }
    raw
}

#[test]
fn deep_nesting_is_bounded_on_a_tokio_sized_stack() {
    on_small_stack(|| {
        for levels in [99, 100, 101, 150, 5_000] {
            for pec in [false, true] {
                let distinct = nested(levels, |l| format!("b{l}"), pec);
                let same = nested(levels, |_| "b".to_owned(), pec);
                for raw in [distinct, same] {
                    match check(&raw) {
                        Ok(msg) => assert_eq!(msg.kind.is_pec(), pec),
                        Err(e) => assert!(matches!(e, ParseError::Mime(_)), "{e}"),
                    }
                }
            }
        }
    });
}

/// 150 levels inside the original message of a busta di trasporto: the envelope is still read,
/// the original is reported as unreadable.
#[test]
fn deep_nesting_inside_postacert_is_bounded_on_a_tokio_sized_stack() {
    on_small_stack(|| {
        let busta = Busta {
            postacert: Some(nested(150, |l| format!("orig{l}"), false)),
            ..Busta::trasporto()
        };
        let msg = check(&busta.signed()).expect("the envelope parses");
        assert_eq!(msg.kind, Kind::Envelope);
        assert_eq!(msg.signature.verdict.as_str(), "untrusted");
    });
}

/// About 1 MB of the worst patterns we could think of, each within the time bound.
#[test]
fn megabyte_hostile_inputs_are_fast() {
    const MB: usize = 1 << 20;
    let fill = |unit: &[u8]| unit.repeat(MB / unit.len());
    let with_headers = |headers: &[u8], body: &[u8]| [headers, body].concat();
    let daticert_in_busta = |xml: &[u8]| {
        Busta {
            daticert: base64_lines(xml),
            ..Busta::accettazione()
        }
        .unsigned()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one long header line", with_headers(b"Subject: ", &fill(b"a"))),
        ("many header lines", fill(b"X-A: b\r\n")),
        ("many folded lines", with_headers(b"Subject: a", &fill(b"\r\n b"))),
        ("address list", with_headers(b"To: ", &fill(b"a@b.it, "))),
        ("address junk", with_headers(b"To: ", &fill(b"<\"@(,;"))),
        ("message ids", with_headers(b"References: ", &fill(b"<a@b> "))),
        ("only line ends", fill(b"\n")),
        ("only carriage returns", fill(b"\r")),
        ("NUL bytes", fill(b"\0")),
        ("high bytes", fill(b"\xff\xfe")),
        (
            "many empty parts",
            with_headers(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n", &fill(b"--b\r\n")),
        ),
        (
            "many parts in an envelope",
            with_headers(
                b"X-Trasporto: posta-certificata\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
                &fill(b"--b\r\nContent-Type: message/rfc822\r\n\r\n"),
            ),
        ),
        ("nested openers", fill(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n")),
        (
            "boundary prefixes",
            with_headers(b"Content-Type: multipart/mixed; boundary=bbbb\r\n\r\n", &fill(b"\n--bbb")),
        ),
        (
            "huge boundary",
            [
                &b"Content-Type: multipart/mixed; boundary=\""[..],
                &fill(b"z"),
                b"\"\r\n\r\n--zz\r\n",
            ]
            .concat(),
        ),
        (
            "huge parameters",
            with_headers(b"Content-Type: text/plain", &fill(b"; a*0*=x'y'%41")),
        ),
        (
            "base64 junk",
            with_headers(b"Content-Transfer-Encoding: base64\r\n\r\n", &fill(b"!=A\xff")),
        ),
        (
            "quoted-printable junk",
            with_headers(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n", &fill(b"=\r=Z")),
        ),
        ("daticert too deep", daticert_in_busta(&fill(b"<a>"))),
        (
            "daticert with many recipients",
            daticert_in_busta(&[&b"<postacert tipo=\"accettazione\">"[..], &fill(b"<consegna>x</consegna>")].concat()),
        ),
        (
            "daticert entities",
            daticert_in_busta(&[&b"<postacert tipo=\"accettazione\"><oggetto>"[..], &fill(b"&#x10FFFF;&bogus;&")].concat()),
        ),
        ("daticert text", daticert_in_busta(&[&b"<postacert><oggetto>"[..], &fill(b"a")].concat())),
    ];
    assert_fast(cases);
}

/// A header line made of many RFC 2047 encoded words costs mailparse 0.18 quadratic time
/// (`header::is_boundary` walks the line with `chars().nth()`; an unclosed `=?` searches to the
/// end of the line each time): 1 MB would take seconds to minutes. The parser refuses such
/// messages up front with a typed error.
#[test]
fn megabyte_encoded_word_floods_are_fast() {
    const MB: usize = 1 << 20;
    let flood =
        |head: &[u8], unit: &[u8]| [head, &unit.repeat(MB / unit.len()), b"\r\n\r\ncorpo"].concat();
    assert_fast(vec![
        (
            "encoded words in Subject",
            flood(b"Subject: ", b"=?UTF-8?B?w6g=?= "),
        ),
        (
            "unclosed encoded words in Subject",
            flood(b"Subject: ", b"=?a "),
        ),
        (
            "encoded words in a Content-Type name",
            flood(b"Content-Type: text/plain; name=", b"=?UTF-8?B?w6g=?= "),
        ),
        (
            "unclosed encoded words in X-Trasporto",
            flood(b"X-Trasporto: ", b"=?a "),
        ),
        (
            "encoded words in To",
            flood(b"To: ", b"=?UTF-8?B?w6g=?= <a@b.it>, "),
        ),
    ]);
}

fn assert_fast(cases: Vec<(&str, Vec<u8>)>) {
    for (name, raw) in cases {
        let started = Instant::now();
        let outcome = check(&raw);
        eprintln!(
            "{name}: {} bytes in {:?}: {}",
            raw.len(),
            started.elapsed(),
            match &outcome {
                Ok(msg) => msg.kind.as_str().to_owned(),
                Err(e) => e.to_string(),
            }
        );
        if !mentions_pec_headers(&raw)
            && let Ok(msg) = &outcome
        {
            assert_eq!(msg.kind, Kind::NonPec, "{name}");
        }
    }
}

#[test]
fn the_parse_limits_are_typed_errors() {
    let limits = Limits {
        max_message_bytes: 1024,
        ..Limits::default()
    };
    let raw = Busta::accettazione().unsigned();
    assert!(matches!(
        OriginalMessage::parse(&raw, &limits),
        Err(ParseError::TooLarge { .. })
    ));
    assert_eq!(PecMessage::parse(b"").unwrap_err(), ParseError::Empty);
}

// ---------------------------------------------------------------------------------------------
// Generators

/// `s` with the case of each letter flipped by the bits of `flips`.
fn random_case(s: &str, flips: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| {
            if flips >> (i % 64) & 1 == 1 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn in_random_case(words: &'static [&'static str]) -> impl Strategy<Value = String> {
    (proptest::sample::select(words), any::<u64>()).prop_map(|(w, flips)| random_case(w, flips))
}

const PEC_VALUES: &[&str] = &[
    "posta-certificata",
    "errore",
    "accettazione",
    "non-accettazione",
    "presa-in-carico",
    "avvenuta-consegna",
    "errore-consegna",
    "preavviso-errore-consegna",
    "rilevazione-virus",
    "completa",
    "breve",
    "sintetica",
    "",
];

const HEADER_NAMES: &[&str] = &[
    "X-Trasporto",
    "X-Ricevuta",
    "X-TipoRicevuta",
    "X-VerificaSicurezza",
    "X-Riferimento-Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Disposition",
    "MIME-Version",
    "Subject",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Message-ID",
    "Date",
    "References",
];

const CHARSETS: &[&str] = &[
    "utf-8",
    "UTF-8",
    "iso-8859-1",
    "windows-1252",
    "utf-16",
    "utf-16le",
    "utf-7",
    "iso-2022-jp",
    "gb18030",
    "koi8-r",
    "us-ascii",
    "x-unknown",
    "",
    "\"utf-8\"",
    "utf-8\"; format=flowed",
    "\u{e8}",
];

const LINE_ENDS: &[&[u8]] = &[b"\r\n", b"\n", b"\r", b"\r\n ", b"\n\t", b""];

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    proptest::sample::select(LINE_ENDS)
}

fn header_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (in_random_case(PEC_VALUES), "[ \t]{0,3}", "[ \t]{0,3}")
            .prop_map(|(v, a, b)| format!("{a}{v}{b}").into_bytes()),
        "[ -~]{0,60}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..60),
        (
            proptest::sample::select(CHARSETS),
            "[BbQqXx]",
            "[ -~]{0,40}"
        )
            .prop_map(|(cs, enc, text)| format!("=?{cs}?{enc}?{text}?=").into_bytes()),
        (
            "(multipart/(signed|mixed|alternative|related|digest)|message/rfc822|text/plain|application/x-pkcs7-signature)",
            "[ -~]{0,30}"
        )
            .prop_map(|(t, b)| format!("{t}; boundary=\"{b}\"; charset=\"{b}\"; name*0*=utf-8''{b}").into_bytes()),
    ]
    .boxed()
}

fn header_line() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![in_random_case(HEADER_NAMES), "[!-9;-~]{0,20}"],
        "[:]?[ \t]{0,2}",
        header_value(),
        line_end(),
    )
        .prop_map(|(name, colon, value, end)| {
            [name.as_bytes(), colon.as_bytes(), &value, end].concat()
        })
}

/// One level of a random `multipart` nest.
#[derive(Debug, Clone)]
struct Level {
    subtype: &'static str,
    boundary: String,
    preamble: bool,
    sibling: bool,
    closed: bool,
    end: &'static [u8],
}

fn level() -> impl Strategy<Value = Level> {
    (
        proptest::sample::select(
            &[
                "mixed",
                "signed",
                "alternative",
                "related",
                "digest",
                "report",
            ][..],
        ),
        prop_oneof![
            Just("b".to_owned()),
            "[0-9A-Za-z'()+_,./:=? -]{1,70}",
            "[ -~]{0,8}",
        ],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        line_end(),
    )
        .prop_map(
            |(subtype, boundary, preamble, sibling, closed, end)| Level {
                subtype,
                boundary: boundary.replace('"', ""),
                preamble,
                sibling,
                closed,
                end,
            },
        )
}

fn nest(levels: &[Level], leaf: &[u8]) -> Vec<u8> {
    let mut body = leaf.to_vec();
    for l in levels.iter().rev() {
        let (b, eol) = (&l.boundary, l.end);
        let mut outer =
            format!("Content-Type: multipart/{}; boundary=\"{b}\"", l.subtype).into_bytes();
        outer.extend_from_slice(eol);
        outer.extend_from_slice(eol);
        if l.preamble {
            outer.extend_from_slice(b"This is a multi-part message in MIME format.");
            outer.extend_from_slice(eol);
        }
        outer.extend_from_slice(format!("--{b}").as_bytes());
        outer.extend_from_slice(eol);
        outer.extend_from_slice(&body);
        outer.extend_from_slice(eol);
        if l.sibling {
            outer.extend_from_slice(format!("--{b}").as_bytes());
            outer.extend_from_slice(eol);
            outer.extend_from_slice(b"Content-Type: application/pkcs7-signature; name=smime.p7s");
            outer.extend_from_slice(eol);
            outer.extend_from_slice(eol);
            outer.extend_from_slice(b"MIIB");
            outer.extend_from_slice(eol);
        }
        if l.closed {
            outer.extend_from_slice(format!("--{b}--").as_bytes());
            outer.extend_from_slice(eol);
        }
        body = outer;
    }
    body
}

fn encoded_body() -> impl Strategy<Value = (String, Vec<u8>)> {
    prop_oneof![
        (
            Just("base64".to_owned()),
            proptest::collection::vec(any::<u8>(), 0..600)
        ),
        (
            Just("base64".to_owned()),
            "[A-Za-z0-9+/=\r\n !-]{0,600}".prop_map(String::into_bytes)
        ),
        (
            Just("quoted-printable".to_owned()),
            "([ -~]|=[0-9A-Fa-fZ\r\n]{0,2}|\r\n){0,300}".prop_map(String::into_bytes)
        ),
        (
            Just("quoted-printable".to_owned()),
            proptest::collection::vec(any::<u8>(), 0..600)
        ),
        (
            "(7bit|8bit|binary|x-uuencode|BASE64|Quoted-Printable|)",
            proptest::collection::vec(any::<u8>(), 0..600)
        ),
    ]
}

/// daticert.xml-like documents: the right vocabulary, any structure, hostile text.
fn daticert_xml() -> impl Strategy<Value = Vec<u8>> {
    let name = proptest::sample::select(
        &[
            "postacert",
            "intestazione",
            "mittente",
            "destinatari",
            "risposte",
            "oggetto",
            "dati",
            "gestore-emittente",
            "data",
            "giorno",
            "ora",
            "identificativo",
            "msgid",
            "ricevuta",
            "consegna",
            "ricezione",
            "errore-esteso",
            "x:postacert",
            "a",
        ][..],
    );
    let text = prop_oneof![
        "[ -~]{0,30}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..30),
        proptest::sample::select(
            &[
                "&lt;a@b&gt;",
                "&#0;",
                "&#xD800;",
                "&#x110000;",
                "&bogus;",
                "&",
                "&#",
                "<![CDATA[x]]>",
                "<![CDATA[",
                "<!--",
                "-->",
                "<?pi?>",
                "<!DOCTYPE postacert SYSTEM \"x.dtd\">",
                "]]>",
                "13/11/2018",
                "16:39:26",
                "99/99/9999",
                "25:61:61",
            ][..],
        )
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    let attrs = proptest::collection::vec(
        (
            proptest::sample::select(&["tipo", "errore", "zona", "x:tipo", "tipo"][..]),
            prop_oneof![
                in_random_case(PEC_VALUES),
                "[ -~]{0,12}",
                Just("+0100".to_owned())
            ],
        ),
        0..3,
    );
    let leaf = (name.clone(), attrs.clone(), text.clone())
        .prop_map(|(n, a, t)| element(n, &a, &[t], true));
    let tree = leaf.prop_recursive(40, 200, 6, move |inner| {
        (
            name.clone(),
            attrs.clone(),
            proptest::collection::vec(prop_oneof![inner, text.clone()], 0..6),
            any::<bool>(),
        )
            .prop_map(|(n, a, children, closed)| element(n, &a, &children, closed))
    });
    (
        proptest::sample::select(
            &[
                "",
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                "<?xml version=\"1.0\" encoding=\"UTF-16\"?>",
                "\u{feff}",
                "<?xml",
            ][..],
        ),
        tree,
    )
        .prop_map(|(prolog, tree)| [prolog.as_bytes(), &tree].concat())
}

fn element(name: &str, attrs: &[(&str, String)], children: &[Vec<u8>], closed: bool) -> Vec<u8> {
    let mut out = format!("<{name}").into_bytes();
    for (k, v) in attrs {
        out.extend_from_slice(format!(" {k}=\"{v}\"").as_bytes());
    }
    out.push(b'>');
    for c in children {
        out.extend_from_slice(c);
    }
    if closed {
        out.extend_from_slice(format!("</{name}>").as_bytes());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(Config { cases: 512, failure_persistence: None, ..Config::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let outcome = check(&raw);
        if let Ok(msg) = &outcome
            && !mentions_pec_headers(&raw)
        {
            prop_assert_eq!(msg.kind, Kind::NonPec);
        }
        let _ = check_daticert(&raw);
        let _ = OriginalMessage::parse(&raw, &Limits::default());
    }

    #[test]
    fn hostile_header_lines_never_panic(
        lines in proptest::collection::vec(header_line(), 0..40),
        end in line_end(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let raw = [lines.concat(), end.to_vec(), body].concat();
        if let Ok(msg) = check(&raw)
            && !mentions_pec_headers(&raw)
        {
            prop_assert_eq!(msg.kind, Kind::NonPec);
        }
    }

    /// Well-formed PEC header lines in any case and spacing decide the kind as the table says.
    #[test]
    fn pec_headers_in_any_case_decide_the_kind(
        trasporto in proptest::option::of((in_random_case(&["X-Trasporto"]), in_random_case(PEC_VALUES), "[ \t]{0,2}")),
        ricevuta in proptest::option::of((in_random_case(&["X-Ricevuta"]), in_random_case(PEC_VALUES), "[ \t]{0,2}")),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut raw = format!("From: posta-certificata@pec.esempio.it{eol}Subject: x{eol}");
        for (name, value, pad) in trasporto.iter().chain(&ricevuta) {
            raw.push_str(&format!("{name}: {pad}{value}{pad}{eol}"));
        }
        raw.push_str(&format!("{eol}corpo{eol}"));
        let msg = check(raw.as_bytes()).expect("well-formed headers parse");
        let expected = Kind::from_headers(
            trasporto.as_ref().map(|t| t.1.as_str()).filter(|v| !v.is_empty()),
            ricevuta.as_ref().map(|r| r.1.as_str()).filter(|v| !v.is_empty()),
        )
        .unwrap_or(Kind::NonPec);
        prop_assert_eq!(msg.kind, expected);
    }

    #[test]
    fn messages_without_pec_headers_are_non_pec(
        lines in proptest::collection::vec(header_line(), 0..20),
        levels in proptest::collection::vec(level(), 0..8),
        leaf in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let raw = [lines.concat(), b"\r\n".to_vec(), nest(&levels, &leaf)].concat();
        prop_assume!(!mentions_pec_headers(&raw));
        if let Ok(msg) = check(&raw) {
            prop_assert_eq!(msg.kind, Kind::NonPec);
            prop_assert!(msg.header_kind.is_none());
            prop_assert!(msg.original.is_some());
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 96, failure_persistence: None, ..Config::default() })]

    /// Random nests up to and beyond mailparse's 100 levels, on a tokio-sized stack.
    #[test]
    fn random_multipart_nesting_is_bounded(
        levels in proptest::collection::vec(level(), 0..=160),
        pec in proptest::option::of(in_random_case(&["X-Trasporto: posta-certificata", "X-Ricevuta: accettazione"])),
        leaf in prop_oneof![
            Just(b"Content-Type: text/plain\r\n\r\nfoglia".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ],
        inside_postacert in any::<bool>(),
    ) {
        let nest = nest(&levels, &leaf);
        let raw = if inside_postacert {
            Busta { postacert: Some(nest), ..Busta::trasporto() }.unsigned()
        } else {
            let mut raw = b"From: a@esempio.it\r\n".to_vec();
            if let Some(pec) = &pec {
                raw.extend_from_slice(pec.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(&nest);
            raw
        };
        let mentions = mentions_pec_headers(&raw);
        let outcome = on_small_stack(move || check(&raw).map(|m| m.kind));
        match outcome {
            Ok(kind) if inside_postacert => prop_assert_eq!(kind, Kind::Envelope),
            Ok(kind) if !mentions => prop_assert_eq!(kind, Kind::NonPec),
            Ok(_) => {}
            Err(e) => prop_assert!(matches!(e, ParseError::Mime(_)), "{}", e),
        }
    }

    /// Random bytes and encodings in every body of a well-formed envelope: still read as PEC.
    #[test]
    fn random_bodies_in_a_busta_keep_it_pec(
        text in encoded_body(),
        charset in prop_oneof![
            proptest::sample::select(CHARSETS).prop_map(|c| c.as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| b.into_iter().filter(|b| !b"\"\r\n".contains(b)).collect()),
        ],
        daticert in prop_oneof![
            encoded_body(),
            daticert_xml().prop_map(|xml| ("base64".to_owned(), base64_lines(&xml))),
            daticert_xml().prop_map(|xml| ("8bit".to_owned(), xml)),
        ],
        postacert in proptest::option::of(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..600),
            (proptest::collection::vec(header_line(), 0..10), encoded_body()).prop_map(|(lines, (cte, body))| {
                [lines.concat(), format!("Content-Transfer-Encoding: {cte}\r\n\r\n").into_bytes(), body].concat()
            }),
        ]),
        lf in any::<bool>(),
    ) {
        let (text_encoding, text) = text;
        let (daticert_encoding, daticert) = daticert;
        let busta = Busta {
            text_charset: charset,
            text_encoding,
            text,
            daticert_encoding,
            daticert,
            ..if postacert.is_some() { Busta::trasporto() } else { Busta::accettazione() }
        };
        let busta = Busta { postacert: postacert.or(busta.postacert.clone()), ..busta };
        let raw = busta.unsigned();
        let raw = if lf { to_lf(&raw) } else { raw };
        let msg = check(&raw);
        prop_assert!(msg.is_ok(), "{:?}", msg.err());
        let msg = msg.expect("checked");
        prop_assert!(msg.kind.is_pec());
        prop_assert!(msg.has_daticert);
    }

    #[test]
    fn hostile_daticert_never_panics(xml in daticert_xml()) {
        if let Some(d) = check_daticert(&xml) {
            let _ = Kind::from_daticert_tipo(&d.tipo);
        }
        let raw = Busta { daticert: base64_lines(&xml), ..Busta::accettazione() }.unsigned();
        let msg = check(&raw).expect("the envelope parses");
        prop_assert!(msg.kind.is_pec());
    }
}

proptest! {
    #![proptest_config(Config { cases: 24, failure_persistence: None, ..Config::default() })]

    /// Patterns repeated up to about 1 MB, within the time bound.
    #[test]
    fn repeated_patterns_up_to_a_megabyte(
        head in proptest::collection::vec(header_line(), 0..4),
        unit in prop_oneof![
            proptest::collection::vec(any::<u8>(), 1..16),
            header_line(),
            "(--b|\r\n|\n|=\\?|\\?=|<|>|@|,|;|=|\"| )+".prop_map(String::into_bytes),
        ],
        size in 1usize..(1 << 20),
    ) {
        let body = unit.repeat(size / unit.len().max(1) + 1);
        let raw = [head.concat(), b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec(), body].concat();
        let _ = check(&raw);
    }
}
