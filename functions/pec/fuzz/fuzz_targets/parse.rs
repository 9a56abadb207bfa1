//! `PecMessage::parse` on arbitrary bytes: never a panic, never a hang; on `Ok`, the report and
//! the attached messages can be read too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pec::report::Report;
use pec::{Kind, PecMessage, ReceiptKind};

fuzz_target!(|raw: &[u8]| {
    let Ok(msg) = PecMessage::parse(raw) else {
        return;
    };
    let report = Report::from_message(&msg, "fuzz");
    let known = ["envelope", "anomaly", "non-pec"]
        .into_iter()
        .chain(ReceiptKind::ALL.map(ReceiptKind::as_str));
    assert!(
        known.into_iter().any(|k| k == report.kind),
        "unknown kind {}",
        report.kind
    );
    if msg.header_kind.is_none() {
        assert_eq!(msg.kind, Kind::NonPec);
    }
    if let Some(span) = &msg.postacert_span {
        assert!(span.end <= raw.len());
    }
    let _ = msg.receipt();
    for attachment in msg.original.iter().flat_map(|o| &o.attachments) {
        if attachment.is_message() {
            let _ = attachment.as_message();
        }
    }
});
