//! Golden tests: every `tests/fixtures/<name>.eml` is parsed and its report compared with
//! `<name>.json`, which `examples/make_fixtures.rs` wrote from the fixture's spec (not from the
//! parser). On a mismatch the actual report is written to `<name>.json.failed`.
//! Deeper checks of bodies, charsets and attachments use the parser API directly.

#[path = "support/fixtures.rs"]
mod fixtures;

use std::fs;
use std::path::{Path, PathBuf};

use pec::report::Report;
use pec::signature::SigningIdentity;
use pec::{Limits, OriginalMessage, PecMessage, TrustAnchors, Verdict};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn parse(name: &str) -> PecMessage {
    PecMessage::parse(&read(name)).unwrap_or_else(|e| panic!("cannot parse {name}: {e}"))
}

fn original(name: &str) -> OriginalMessage {
    parse(name)
        .original
        .unwrap_or_else(|| panic!("{name}: no original message"))
}

/// `signature_reason` and `warnings` are the parser's own diagnostic texts, which a spec cannot
/// predict: they are not compared.
fn comparable(report: &Report) -> Value {
    let mut report = report.clone();
    report.signature_reason = None;
    report.warnings = Vec::new();
    serde_json::to_value(report).expect("a report serialises")
}

/// One line per differing key: `key: expected X, got Y`.
fn diff(expected: &Value, actual: &Value) -> String {
    let (Value::Object(e), Value::Object(a)) = (expected, actual) else {
        return format!("expected {expected}, got {actual}");
    };
    e.iter()
        .filter(|(k, v)| a.get(*k) != Some(*v))
        .map(|(k, v)| {
            format!(
                "  {k}: expected {v}, got {}",
                a.get(k).unwrap_or(&Value::Null)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fixtures_give_their_expected_reports() {
    let mut paths: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("tests/fixtures exists")
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    let mut ran = 0;
    for path in &paths {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name");
        let raw = fs::read(path).expect("readable fixture");
        let json_path = path.with_extension("json");
        let expected: Report =
            serde_json::from_slice(&fs::read(&json_path).expect("a .json beside each .eml"))
                .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        let failed_path = path.with_extension("json.failed");
        let actual = match PecMessage::parse(&raw) {
            Ok(msg) => Report::from_message(&msg, file),
            Err(e) => {
                failures.push(format!("{file}: cannot parse: {e}"));
                continue;
            }
        };
        ran += 1;
        let (want, got) = (comparable(&expected), comparable(&actual));
        if want == got {
            let _ = fs::remove_file(&failed_path);
        } else {
            let mut pretty = serde_json::to_string_pretty(&actual).expect("a report serialises");
            pretty.push('\n');
            fs::write(&failed_path, pretty).expect("cannot write .json.failed");
            failures.push(format!("{file}:\n{}", diff(&want, &got)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    let specs = fixtures::all().len();
    assert!(
        ran >= specs,
        "only {ran} fixtures ran, {specs} are specified"
    );
}

#[test]
fn committed_fixtures_are_what_the_specs_build() {
    for fixture in fixtures::all() {
        let eml = fixture.file_name();
        assert!(
            read(&eml) == fixture.build(),
            "{eml} differs from what its spec builds: run `cargo run -p pec --example make_fixtures`"
        );
        let committed: Report =
            serde_json::from_slice(&read(&format!("{}.json", fixture.name))).expect("valid json");
        assert_eq!(
            committed,
            fixture.expected(),
            "{}.json differs from its spec",
            fixture.name
        );
    }
}

#[test]
fn html_only_original_has_html_and_no_text() {
    let o = original("synthetic-envelope-html-only-lf-plain-daticert.eml");
    assert_eq!(o.text, None);
    let html = o.html.expect("html body");
    assert_eq!(html.replace("\r\n", "\n").trim_end(), fixtures::HTML_ONLY);
}

#[test]
fn single_byte_charsets_decode_to_the_original_text() {
    for (file, text) in [
        (
            "synthetic-envelope-iso-8859-1.eml",
            fixtures::ISO_8859_1_TEXT,
        ),
        (
            "synthetic-envelope-windows-1252.eml",
            fixtures::WINDOWS_1252_TEXT,
        ),
    ] {
        let o = original(file);
        let got = o.text.unwrap_or_else(|| panic!("{file}: no text body"));
        assert_eq!(got.replace("\r\n", "\n").trim_end(), text, "{file}");
    }
    assert!(
        fixtures::WINDOWS_1252_TEXT.contains("perché") && fixtures::WINDOWS_1252_TEXT.contains("…")
    );
    assert!(fixtures::WINDOWS_1252_TEXT.contains('€'));
}

#[test]
fn rfc2231_file_name_decodes_to_unicode() {
    let fixture = spec("synthetic-envelope-rfc2231-attachment");
    let o = original("synthetic-envelope-rfc2231-attachment.eml");
    assert_eq!(o.attachments.len(), 1);
    let a = &o.attachments[0];
    assert_eq!(a.filename, fixtures::RFC2231_NAME);
    assert_eq!(a.content_type, "application/pdf");
    assert_eq!(a.data, fixture.original.files[0].data);
    assert_eq!(a.size(), fixture.original.files[0].data.len());
    assert!(!a.inline);
}

#[test]
fn attached_eml_opens_as_a_message() {
    let fixture = spec("synthetic-envelope-attached-eml");
    let o = original("synthetic-envelope-attached-eml.eml");
    let names: Vec<&str> = o.attachments.iter().map(|a| a.filename.as_str()).collect();
    assert_eq!(names, ["inoltro.eml", "documento firmato.pdf.p7m"]);
    let eml = &o.attachments[0];
    assert!(
        eml.is_message(),
        "{}: content type {}",
        eml.filename,
        eml.content_type
    );
    // Attached messages travel with CRLF line endings.
    assert_eq!(eml.data, fixture.original.files[0].data);
    let inner = eml.as_message().expect("the attached message parses");
    assert_eq!(inner.subject.as_deref(), Some(fixtures::FORWARDED_SUBJECT));
    assert_eq!(inner.attachments.len(), 1);
    assert_eq!(inner.attachments[0].filename, "preventivo.pdf");
    let p7m = &o.attachments[1];
    assert!(!p7m.is_message());
    assert_eq!(p7m.data, fixture.original.files[1].data);
}

#[test]
fn inline_cid_image_is_inline_with_its_content_id() {
    let fixture = spec("synthetic-envelope-inline-cid-unsigned");
    let o = original("synthetic-envelope-inline-cid-unsigned.eml");
    assert!(
        o.html
            .as_deref()
            .is_some_and(|h| h.contains("cid:logo.1@esempio.test"))
    );
    let logo = o
        .attachments
        .iter()
        .find(|a| a.filename == "logo.png")
        .expect("logo.png");
    assert_eq!(logo.content_id.as_deref(), Some("logo.1@esempio.test"));
    assert!(logo.inline);
    assert_eq!(logo.content_type, "image/png");
    assert_eq!(logo.data, fixture.original.files[0].data);
    let pdf = o
        .attachments
        .iter()
        .find(|a| a.filename == "preventivo.pdf")
        .expect("preventivo.pdf");
    assert!(!pdf.inline);
    assert_eq!(pdf.size(), fixture.original.files[1].data.len());
}

#[test]
fn original_headers_survive_the_envelope() {
    let fixture = spec("synthetic-envelope-rfc2231-attachment");
    let o = original("synthetic-envelope-rfc2231-attachment.eml");
    let from = o.from.expect("From");
    assert_eq!(from.address, fixture.original.from.address);
    assert_eq!(from.name, fixture.original.from.name);
    assert_eq!(o.subject.as_deref(), Some(fixture.original.subject));
    // The provider replaced the client Message-ID with the identificativo (pec-format §3.2).
    let identificativo = fixture.pec.as_ref().expect("a PEC fixture").identificativo;
    assert_eq!(o.message_id.as_deref(), Some(identificativo));
    let text = o.text.map(|t| t.replace("\r\n", "\n"));
    assert_eq!(text.as_deref().map(str::trim_end), fixture.original.text);
}

#[test]
fn breve_receipt_carries_hashes_instead_of_attachments() {
    let fixture = spec("synthetic-avvenuta-consegna-breve");
    let o = original("synthetic-avvenuta-consegna-breve.eml");
    assert_eq!(o.attachments.len(), 1);
    let hashed = &o.attachments[0];
    assert_eq!(hashed.filename, "risposta.pdf");
    assert_ne!(hashed.data, fixture.original.files[0].data);
    assert!(String::from_utf8_lossy(&hashed.data).starts_with("SHA-1: "));
    let completa = original("synthetic-avvenuta-consegna-completa.eml");
    assert_eq!(completa.attachments[0].data, fixture.original.files[0].data);
}

#[test]
fn sandbox_signature_verifies_under_the_sandbox_ca_with_crlf_and_lf() {
    let crlf = read("synthetic-envelope-signed-sandbox.eml");
    let lf: Vec<u8> = String::from_utf8(crlf.clone())
        .expect("ASCII fixture")
        .replace("\r\n", "\n")
        .into_bytes();
    let mut anchors = TrustAnchors::empty();
    anchors
        .add_pem(SigningIdentity::sandbox_ca_pem())
        .expect("the sandbox CA PEM");
    for raw in [&crlf, &lf] {
        let msg = PecMessage::parse_with(raw, &Limits::default(), &anchors).expect("parses");
        assert_eq!(
            msg.signature.verdict,
            Verdict::Valid,
            "{:?}",
            msg.signature.reason
        );
        assert_eq!(
            msg.signature.signer_email.as_deref(),
            Some("posta-certificata@pec.sandbox.test")
        );
    }
    // One changed byte in the signed content breaks it.
    let tampered =
        String::from_utf8(crlf)
            .expect("ASCII")
            .replacen("ricevuta.pdf", "ricevutX.pdf", 1);
    let msg =
        PecMessage::parse_with(tampered.as_bytes(), &Limits::default(), &anchors).expect("parses");
    assert_eq!(msg.signature.verdict, Verdict::Invalid);
}

fn spec(name: &str) -> fixtures::Fixture {
    fixtures::all()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture spec {name}"))
}
