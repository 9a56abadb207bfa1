//! Builds messages shaped like the ones real mail clients and PEC providers write, for test
//! fixtures and for the sandbox PEC provider.
//!
//! * [`MailBuilder`] writes an ordinary RFC 5322 message: addresses, RFC 2047 subjects, text and
//!   HTML bodies in a chosen charset and transfer encoding, attachments with RFC 2231 names,
//!   inline `cid:` parts and attached messages.
//! * [`daticert_xml`] writes `daticert.xml` as providers do (UTF-8, 4-space indent, DTD order).
//! * [`PecBuilder`] writes a provider message of any [`Kind`]: a busta di trasporto or di
//!   anomalia around an original message, or any receipt, with the provider's headers, the
//!   Italian notice (text and HTML, iso-8859-1 quoted-printable), `daticert.xml`,
//!   `postacert.eml` where the rules want it, and the S/MIME `multipart/signed` shell.
//!
//! Output is deterministic: the same inputs give the same bytes (boundaries and provider ids are
//! derived from hashes of the inputs; no clock, no randomness), so fixtures are reproducible.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, FixedOffset, Utc};
use mailparse::{MailHeaderMap, ParsedMail};
use sha1::{Digest, Sha1};

use crate::daticert::{Daticert, Destinatario, normalize_msgid};
use crate::encode::{escape_html, hex};
use crate::signature::{DigestAlgorithm, SigningIdentity, sign_detached};
use crate::{Kind, ReceiptKind};

/// Why a provider message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot build a {0} message: non-pec is not a provider message (use MailBuilder)")]
    NotPec(&'static str),
    #[error("cannot build a {0} message: it needs the original message (postacert.eml)")]
    MissingOriginal(&'static str),
    #[error("cannot build a {0} message: daticert has no data (the event timestamp)")]
    MissingData(&'static str),
    #[error("cannot sign the {kind} message: {reason}")]
    Signing { kind: &'static str, reason: String },
}

mod encoding;
mod mail;
mod mime;
mod provider;
mod xml;

use encoding::*;
pub use mail::*;
use mime::*;
pub use provider::*;
pub use xml::*;

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn when() -> DateTime<FixedOffset> {
        FixedOffset::east_opt(3600)
            .unwrap()
            .with_ymd_and_hms(2018, 11, 13, 16, 39, 27)
            .unwrap()
    }

    #[test]
    fn daticert_xml_matches_the_aruba_layout() {
        let d = Daticert {
            tipo: "avvenuta-consegna".into(),
            errore: "nessuno".into(),
            mittente: Some("l.battistini@pec.it".into()),
            destinatari: vec![Destinatario { address: "l.battistini@pec.it".into(), tipo: "certificato".into() }],
            risposte: Some("l.battistini@pec.it".into()),
            oggetto: Some("IT03339130126_00009.xml".into()),
            gestore_emittente: Some("ARUBA PEC S.p.A.".into()),
            data: Some(when()),
            identificativo: Some("opec288.20181113163926.01838.310.1.63@pec.aruba.it".into()),
            msgid: Some("<1542123565.921546936035156.464602125997431-openerp-8-fatturapa.attachment.out@elbati-Vostro-3550>".into()),
            ricevuta: Some("completa".into()),
            consegna: vec!["l.battistini@pec.it".into()],
            ricezione: vec![],
            errore_esteso: None,
        };
        // The base64 daticert.xml of pec-samples/oca-aruba-avvenuta-consegna.eml, decoded.
        let aruba = "PD94bWwgdmVyc2lvbj0iMS4wIiBlbmNvZGluZz0iVVRGLTgiPz4KPHBvc3RhY2VydCB0aXBvPSJhdnZlbnV0YS1jb25zZWduYSIgZXJyb3JlPSJuZXNzdW5vIj4KICAgIDxpbnRlc3RhemlvbmU+CiAgICAgICAgPG1pdHRlbnRlPmwuYmF0dGlzdGluaUBwZWMuaXQ8L21pdHRlbnRlPgogICAgICAgIDxkZXN0aW5hdGFyaSB0aXBvPSJjZXJ0aWZpY2F0byI+bC5iYXR0aXN0aW5pQHBlYy5pdDwvZGVzdGluYXRhcmk+CiAgICAgICAgPHJpc3Bvc3RlPmwuYmF0dGlzdGluaUBwZWMuaXQ8L3Jpc3Bvc3RlPgogICAgICAgIDxvZ2dldHRvPklUMDMzMzkxMzAxMjZfMDAwMDkueG1sPC9vZ2dldHRvPgogICAgPC9pbnRlc3RhemlvbmU+CiAgICA8ZGF0aT4KICAgICAgICA8Z2VzdG9yZS1lbWl0dGVudGU+QVJVQkEgUEVDIFMucC5BLjwvZ2VzdG9yZS1lbWl0dGVudGU+CiAgICAgICAgPGRhdGEgem9uYT0iKzAxMDAiPgogICAgICAgICAgICA8Z2lvcm5vPjEzLzExLzIwMTg8L2dpb3Jubz4KICAgICAgICAgICAgPG9yYT4xNjozOToyNzwvb3JhPgogICAgICAgIDwvZGF0YT4KICAgICAgICA8aWRlbnRpZmljYXRpdm8+b3BlYzI4OC4yMDE4MTExMzE2MzkyNi4wMTgzOC4zMTAuMS42M0BwZWMuYXJ1YmEuaXQ8L2lkZW50aWZpY2F0aXZvPgogICAgICAgIDxtc2dpZD4mbHQ7MTU0MjEyMzU2NS45MjE1NDY5MzYwMzUxNTYuNDY0NjAyMTI1OTk3NDMxLW9wZW5lcnAtOC1mYXR0dXJhcGEuYXR0YWNobWVudC5vdXRAZWxiYXRpLVZvc3Ryby0zNTUwJmd0OzwvbXNnaWQ+CiAgICAgICAgPHJpY2V2dXRhIHRpcG89ImNvbXBsZXRhIiAvPgogICAgICAgIDxjb25zZWduYT5sLmJhdHRpc3RpbmlAcGVjLml0PC9jb25zZWduYT4KICAgIDwvZGF0aT4KPC9wb3N0YWNlcnQ+Cg==";
        let expected = String::from_utf8(BASE64.decode(aruba).unwrap()).unwrap();
        assert_eq!(daticert_xml(&d), expected);
        assert_eq!(Daticert::parse(daticert_xml(&d).as_bytes()).unwrap(), d);
    }

    #[test]
    fn quoted_printable_wraps_and_escapes() {
        let qp = quoted_printable(&crlf(
            &Charset::Iso8859_1.encode(&format!("è {}\nfine ", "x".repeat(80))),
        ));
        assert!(qp.starts_with("=E8 xxx"));
        assert!(
            qp.lines().all(|l| l.trim_end_matches('\r').len() <= 76),
            "{qp}"
        );
        assert!(qp.ends_with("fine=20"));
    }

    #[test]
    fn encoded_words_and_rfc2231_params() {
        assert_eq!(encode_words("perché"), "=?UTF-8?Q?perch=C3=A9?=");
        assert_eq!(
            param("filename", "fattura perché.pdf"),
            "filename*=UTF-8''fattura%20perch%C3%A9.pdf"
        );
        assert_eq!(param("filename", "a.pdf"), "filename=\"a.pdf\"");
        let long = param("filename", &"é".repeat(40));
        assert!(long.starts_with("filename*0*=UTF-8''%C3%A9"), "{long}");
        assert!(long.contains(";\r\n filename*1*=%C3%A9"), "{long}");
    }

    #[test]
    fn mail_builder_is_deterministic_and_readable_by_mailparse() {
        let build = || {
            MailBuilder::new()
                .from(Address::named("Mario Rossi", "mario@pec.example.it"))
                .to("ufficio@pec.example.it")
                .subject("Fattura perché € 10")
                .date(when())
                .message_id("abc@example.it")
                .text("Buongiorno,\nin allegato.")
                .html("<p>Buongiorno</p>")
                .attachment("fattura perché.pdf", "application/pdf", b"%PDF-1.4 test")
                .build()
        };
        let raw = build();
        assert_eq!(raw, build());
        let mail = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(
            mail.headers.get_first_value("Subject").unwrap(),
            "Fattura perché € 10"
        );
        assert_eq!(mail.subparts.len(), 2);
        let pdf = &mail.subparts[1];
        assert_eq!(
            pdf.get_content_disposition().params["filename"],
            "fattura perché.pdf"
        );
        assert_eq!(pdf.get_body_raw().unwrap(), b"%PDF-1.4 test");
    }

    #[test]
    fn subjects_keep_a_plain_ascii_prefix() {
        assert_eq!(
            subject_value("POSTA CERTIFICATA: Qualità"),
            "POSTA CERTIFICATA:\r\n =?UTF-8?Q?Qualit=C3=A0?="
        );
        assert_eq!(subject_value("Perché"), "=?UTF-8?Q?Perch=C3=A9?=");
        let raw = format!(
            "Subject: {}\r\n\r\n",
            subject_value("POSTA CERTIFICATA: Fattura – perché")
        );
        let (headers, _) = mailparse::parse_headers(raw.as_bytes()).unwrap();
        assert_eq!(
            headers.get_first_value("Subject").unwrap(),
            "POSTA CERTIFICATA: Fattura – perché"
        );
    }

    #[test]
    fn daticert_facts_come_from_the_original_headers() {
        let raw = MailBuilder::new()
            .from(Address::named("Mario Rossi", "mario@pec.x.it"))
            .to("a@pec.y.it")
            .cc(Address::named("B", "b@y.it"))
            .subject("Qualità")
            .message_id("<client.1@x.it>")
            .in_reply_to("prev@x.it")
            .references("root@x.it")
            .header("X-TipoRicevuta", "breve")
            .text("t")
            .build();
        let d = daticert_from_original(&raw);
        assert_eq!(d.mittente.as_deref(), Some("mario@pec.x.it"));
        let dest: Vec<&str> = d.destinatari.iter().map(|x| x.address.as_str()).collect();
        assert_eq!(dest, ["a@pec.y.it", "b@y.it"]);
        assert_eq!(d.risposte.as_deref(), Some("mario@pec.x.it"));
        assert_eq!(d.oggetto.as_deref(), Some("Qualità"));
        assert_eq!(d.msgid.as_deref(), Some("<client.1@x.it>"));
        assert_eq!(d.ricevuta.as_deref(), Some("breve"));
        let (headers, _) = mailparse::parse_headers(&raw).unwrap();
        assert_eq!(
            headers.get_first_value("In-Reply-To").unwrap(),
            "<prev@x.it>"
        );
        assert_eq!(
            headers.get_first_value("References").unwrap(),
            "<root@x.it>"
        );
    }

    #[test]
    fn provider_messages_are_deterministic_and_complete() {
        let original = MailBuilder::new()
            .from("mario@pec.x.it")
            .to("a@pec.y.it")
            .subject("Prova")
            .message_id("c.1@x.it")
            .text("t")
            .attachment("f.pdf", "application/pdf", b"PDF")
            .build();
        let mut d = daticert_from_original(&original);
        d.data = Some(when());
        d.identificativo = Some("opec.1.2@pec.x.it".into());
        d.consegna = vec!["a@pec.y.it".into()];
        let provider = Provider::new("X PEC", "pec.y.it");
        let build = |kind, ricevuta: &str| {
            let mut d = d.clone();
            d.ricevuta = Some(ricevuta.to_owned());
            PecBuilder::new(kind, provider.clone(), d)
                .original(&original)
                .build()
                .unwrap()
        };
        let consegna = Kind::Receipt(ReceiptKind::AvvenutaConsegna);
        assert_eq!(build(consegna, "completa"), build(consegna, "completa"));
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        let completa = text(build(consegna, "completa"));
        assert!(completa.contains("X-Ricevuta: avvenuta-consegna\r\n"));
        assert!(completa.contains("Subject: CONSEGNA: Prova\r\n"));
        assert!(completa.contains("From: posta-certificata@pec.y.it\r\n"));
        assert!(completa.contains("name=\"postacert.eml\""));
        assert!(
            completa.contains(
                "Message-ID: <opec.1.2@pec.x.it>\r\nX-Riferimento-Message-ID: <c.1@x.it>"
            )
        );
        assert!(!text(build(consegna, "sintetica")).contains("postacert.eml"));
        assert!(text(build(consegna, "breve")).contains("SHA-1: "));
        let envelope = text(build(Kind::Envelope, "breve"));
        assert!(
            envelope
                .contains("From: \"Per conto di: mario@pec.x.it\" <posta-certificata@pec.y.it>")
        );
        assert!(envelope.contains("X-TipoRicevuta: breve\r\n"));
        assert!(!envelope.contains("SHA-1: "));
        let missing = PecBuilder::new(Kind::Envelope, provider.clone(), d.clone()).build();
        assert!(matches!(missing, Err(BuildError::MissingOriginal(_))));
        assert!(PecBuilder::new(Kind::NonPec, provider, d).build().is_err());
    }

    #[test]
    fn breve_replaces_attachments_and_keeps_bodies() {
        let raw = MailBuilder::new()
            .from("a@x.it")
            .to("b@y.it")
            .subject("s")
            .text("corpo")
            .attachment("f.pdf", "application/pdf", b"PDF")
            .build();
        let breve = replace_attachments_with_hashes(&raw);
        let mail = mailparse::parse_mail(&breve).unwrap();
        assert_eq!(mail.subparts[0].get_body().unwrap(), "corpo");
        let hashed = &mail.subparts[1];
        assert_eq!(hashed.ctype.mimetype, "text/plain");
        assert_eq!(hashed.get_content_disposition().params["filename"], "f.pdf");
        let body = hashed.get_body().unwrap();
        assert!(body.starts_with("SHA-1: "), "{body}");
        assert_eq!(body.trim_end().len(), "SHA-1: ".len() + 40);
    }

    #[test]
    fn message_id_is_replaced_by_the_identificativo() {
        let raw = b"From: a@x.it\r\nMessage-ID:\r\n <client@x.it>\r\nSubject: s\r\n\r\nbody\r\n";
        let out = replace_message_id(raw, "opec.1@pec.x.it", Some("<client@x.it>"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "From: a@x.it\r\nSubject: s\r\nMessage-ID: <opec.1@pec.x.it>\r\n\
             X-Riferimento-Message-ID: <client@x.it>\r\n\r\nbody\r\n"
        );
    }
}
