//! The project's synthetic PEC fixtures: for each one, what the message is meant to be (its
//! spec), how `pec::build` writes it, and the report a correct parser gives for it.
//!
//! The expected report is derived from the spec alone (who sent what to whom, which kind, which
//! identificativo, ...), never by running the parser, so the golden test checks the parser
//! against intent. Shared by `examples/make_fixtures.rs` (writes `tests/fixtures/`) and
//! `tests/golden.rs` (checks the parser and that the committed files are reproducible).
//! Every fixture is marked `X-Fixture: synthetic` in its top-level header.

#![allow(dead_code)]

use chrono::{DateTime, FixedOffset, Utc};
use pec::build::{
    Address, Charset, DaticertEncoding, FilePart, LineEnding, ListCopy, MailBuilder, PecBuilder,
    Provider, SignatureMode, TransferEncoding,
};
use pec::report::Report;
use pec::signature::SigningIdentity;
use pec::{Daticert, Destinatario, Kind, ReceiptKind};

/// What the original message is: the user's mail (postacert.eml), or the message itself for
/// non-PEC fixtures.
#[derive(Debug, Clone)]
pub struct OriginalSpec {
    pub from: Address,
    pub to: Vec<&'static str>,
    pub cc: Vec<&'static str>,
    pub reply_to: Option<&'static str>,
    pub subject: &'static str,
    pub message_id: &'static str,
    pub date: &'static str,
    pub text: Option<&'static str>,
    pub html: Option<&'static str>,
    pub charset: Charset,
    pub encoding: TransferEncoding,
    pub files: Vec<FileSpec>,
    /// `X-TipoRicevuta` set by the sender's client.
    pub tipo_ricevuta: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    pub name: &'static str,
    pub content_type: &'static str,
    pub data: Vec<u8>,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Attachment,
    /// Inline, with this Content-ID, referenced from the HTML.
    Inline(&'static str),
    /// An attached message (message/rfc822).
    Message,
}

/// The signature shell of a provider message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    None,
    WithoutP7s,
    Placeholder,
    Sandbox,
}

/// What the provider message is.
#[derive(Debug, Clone)]
pub struct PecSpec {
    pub kind: Kind,
    pub virus: bool,
    pub provider: Provider,
    pub identificativo: &'static str,
    /// The daticert timestamp, RFC 3339.
    pub data: &'static str,
    /// daticert `ricevuta/@tipo` (envelopes and avvenuta-consegna).
    pub ricevuta: Option<&'static str>,
    pub consegna: Vec<&'static str>,
    pub ricezione: Vec<&'static str>,
    pub errore: &'static str,
    pub errore_esteso: Option<&'static str>,
    /// Recipients that are not PEC mailboxes (`destinatari tipo="esterno"`).
    pub esterni: Vec<&'static str>,
    pub line_ending: LineEnding,
    pub lowercase_headers: bool,
    pub daticert_encoding: DaticertEncoding,
    pub signature: Sig,
    pub list_copy: Option<ListCopy>,
}

#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: &'static str,
    pub original: OriginalSpec,
    pub pec: Option<PecSpec>,
}

fn time(rfc3339: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(rfc3339).expect("fixture timestamps are RFC 3339")
}

impl OriginalSpec {
    pub fn mail(&self) -> MailBuilder {
        let mut m = MailBuilder::new()
            .from(self.from.clone())
            .subject(self.subject)
            .date(time(self.date))
            .message_id(self.message_id)
            .charset(self.charset)
            .transfer_encoding(self.encoding);
        for to in &self.to {
            m = m.to(*to);
        }
        for cc in &self.cc {
            m = m.cc(*cc);
        }
        if let Some(reply_to) = self.reply_to {
            m = m.reply_to(reply_to);
        }
        if let Some(text) = self.text {
            m = m.text(text);
        }
        if let Some(html) = self.html {
            m = m.html(html);
        }
        if let Some(tipo) = self.tipo_ricevuta {
            m = m.header("X-TipoRicevuta", tipo);
        }
        for f in &self.files {
            m = m.file(match f.role {
                Role::Attachment => FilePart::attachment(f.name, f.content_type, &f.data),
                Role::Inline(cid) => FilePart::inline(cid, f.name, f.content_type, &f.data),
                Role::Message => FilePart::message(f.name, &f.data),
            });
        }
        m
    }

    /// File names of the leaf parts in MIME order: inline parts (multipart/related) first.
    pub fn attachment_names(&self) -> Vec<String> {
        let inline = self
            .files
            .iter()
            .filter(|f| matches!(f.role, Role::Inline(_)));
        let others = self
            .files
            .iter()
            .filter(|f| !matches!(f.role, Role::Inline(_)));
        inline.chain(others).map(|f| f.name.to_owned()).collect()
    }

    pub fn recipients(&self) -> Vec<String> {
        self.to
            .iter()
            .chain(&self.cc)
            .map(|s| (*s).to_owned())
            .collect()
    }
}

impl PecSpec {
    fn has_postacert(&self) -> bool {
        match self.kind {
            Kind::Envelope | Kind::Anomaly => true,
            Kind::Receipt(ReceiptKind::AvvenutaConsegna) => self.ricevuta != Some("sintetica"),
            _ => false,
        }
    }

    fn errore(&self) -> &'static str {
        if self.virus && self.errore == "nessuno" {
            "virus"
        } else {
            self.errore
        }
    }
}

impl Fixture {
    pub fn file_name(&self) -> String {
        format!("{}.eml", self.name)
    }

    /// The certification data the provider is told.
    pub fn daticert(&self) -> Option<Daticert> {
        let p = self.pec.as_ref()?;
        let o = &self.original;
        Some(Daticert {
            tipo: String::new(),
            errore: p.errore().to_owned(),
            mittente: Some(o.from.address.clone()),
            destinatari: o
                .recipients()
                .into_iter()
                .map(|address| {
                    let tipo = if p.esterni.contains(&address.as_str()) {
                        "esterno"
                    } else {
                        "certificato"
                    };
                    Destinatario {
                        address,
                        tipo: tipo.to_owned(),
                    }
                })
                .collect(),
            risposte: Some(o.reply_to.unwrap_or(&o.from.address).to_owned()),
            oggetto: Some(o.subject.to_owned()),
            gestore_emittente: Some(p.provider.name.clone()),
            data: Some(time(p.data)),
            identificativo: Some(p.identificativo.to_owned()),
            msgid: Some(format!("<{}>", o.message_id)),
            ricevuta: p.ricevuta.map(str::to_owned),
            consegna: p.consegna.iter().map(|s| (*s).to_owned()).collect(),
            ricezione: p.ricezione.iter().map(|s| (*s).to_owned()).collect(),
            errore_esteso: p.errore_esteso.map(str::to_owned),
        })
    }

    /// The message bytes.
    pub fn build(&self) -> Vec<u8> {
        let original = self.original.mail().header("X-Fixture", "synthetic");
        let Some(p) = &self.pec else {
            return original.build();
        };
        // Inside the provider message the original is the user's mail, unmarked.
        let original = self.original.mail().build();
        let daticert = self.daticert().expect("a PEC fixture has daticert data");
        let signature = match p.signature {
            Sig::None => SignatureMode::None,
            Sig::WithoutP7s => SignatureMode::WithoutP7s,
            Sig::Placeholder => SignatureMode::Placeholder,
            Sig::Sandbox => SignatureMode::signed_by(SigningIdentity::sandbox()),
        };
        let mut b = PecBuilder::new(p.kind, p.provider.clone(), daticert)
            .original(&original)
            .virus(p.virus)
            .header("X-Fixture", "synthetic")
            .line_ending(p.line_ending)
            .lowercase_headers(p.lowercase_headers)
            .daticert_encoding(p.daticert_encoding)
            .signature(signature);
        if let Some(list) = &p.list_copy {
            b = b.list_copy(list.clone());
        }
        b.build().expect("fixture specs are complete")
    }

    /// The report a correct parser gives, from the spec alone. `signature_reason` and `warnings`
    /// are the parser's own diagnostic texts: left empty here, ignored by the golden test.
    pub fn expected(&self) -> Report {
        let o = &self.original;
        let mut r = Report {
            file: self.file_name(),
            kind: "non-pec".to_owned(),
            ricevuta: None,
            ricevuta_tipo: o.tipo_ricevuta.map(str::to_owned),
            subject: o.subject.to_owned(),
            raw_subject: o.subject.to_owned(),
            sender: Some(o.from.address.clone()),
            recipients: o.recipients(),
            riferimento_message_id: None,
            identificativo: None,
            msgid: None,
            errore: None,
            errore_esteso: None,
            consegna: Vec::new(),
            has_daticert: false,
            has_postacert: false,
            attachments: o.attachment_names(),
            signature: "missing".to_owned(),
            provider: None,
            data: None,
            signer: None,
            signing_time: None,
            signature_reason: None,
            warnings: Vec::new(),
        };
        let Some(p) = &self.pec else {
            return r;
        };
        let prefix = pec::subject::prefix(p.kind, p.virus, false).unwrap_or_default();
        let tag = p.list_copy.as_ref().and_then(|l| l.subject_tag.as_ref());
        r.kind = p.kind.as_str().to_owned();
        r.ricevuta = match p.kind {
            Kind::Receipt(k) => Some(k.as_str().to_owned()),
            _ => None,
        };
        r.ricevuta_tipo = p.ricevuta.map(str::to_owned);
        r.raw_subject = match tag {
            Some(tag) => format!("{tag} {prefix}{}", o.subject),
            None => format!("{prefix}{}", o.subject),
        };
        r.riferimento_message_id = Some(format!("<{}>", o.message_id));
        r.identificativo = Some(p.identificativo.to_owned());
        r.msgid = Some(format!("<{}>", o.message_id));
        r.errore = Some(p.errore().to_owned());
        r.errore_esteso = p.errore_esteso.map(str::to_owned);
        r.consegna = p.consegna.iter().map(|s| (*s).to_owned()).collect();
        r.has_daticert = true;
        r.has_postacert = p.has_postacert();
        if !r.has_postacert {
            r.attachments = Vec::new();
        }
        r.signature = match p.signature {
            Sig::None | Sig::WithoutP7s => "missing",
            Sig::Placeholder => "invalid",
            // Signed by the sandbox test CA, which is not a PEC trust anchor.
            Sig::Sandbox => "untrusted",
        }
        .to_owned();
        r.provider = Some(p.provider.name.clone());
        r.data = Some(time(p.data).to_rfc3339());
        if p.signature == Sig::Sandbox {
            r.signer = Some(SigningIdentity::sandbox().subject());
            r.signing_time = Some(time(p.data).with_timezone(&Utc).to_rfc3339());
        }
        r
    }
}

// ---------------------------------------------------------------------------------------------
// Contents

fn esempio() -> Provider {
    Provider::new("Esempio PEC S.p.A.", "pec.esempio.test")
}

fn altro_gestore() -> Provider {
    Provider::new("Altro Gestore PEC S.r.l.", "pec.altrogestore.test")
}

fn sandbox() -> Provider {
    Provider::new("PEC Connector Sandbox", "pec.sandbox.test")
}

/// A small PDF-looking file with binary bytes.
fn pdf(seed: u8) -> Vec<u8> {
    let mut data = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
    data.extend((0..=255u8).map(|b| b.wrapping_mul(31).wrapping_add(seed)));
    data.extend_from_slice(b"\n%%EOF\n");
    data
}

/// A 1x1 PNG.
fn png() -> Vec<u8> {
    vec![
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ]
}

pub const WINDOWS_1252_TEXT: &str = "Gentili signori,\nvi scrivo perché la fattura di “novembre” è ancora aperta… importo: 1.250,00 €.\nCordiali saluti";
pub const ISO_8859_1_TEXT: &str = "Buongiorno,\nperò la qualità del servizio è già migliorata: così è più semplice.\nA presto, Niccolò";
pub const HTML_ONLY: &str = "<html><body><p>Si trasmette la <b>determina n. 42</b> del 27/11/2026.</p><p>Distinti saluti</p></body></html>";
pub const CID_HTML: &str = "<html><body><p><img src=\"cid:logo.1@esempio.test\" alt=\"logo\"></p><p>Preventivo in allegato.</p></body></html>";
pub const RFC2231_NAME: &str = "fattura perché.pdf";
pub const FORWARDED_SUBJECT: &str = "Preventivo lavori di manutenzione";

fn forwarded_eml() -> Vec<u8> {
    MailBuilder::new()
        .from(Address::named(
            "Impresa Edile Bianchi",
            "preventivi@bianchi-edilizia.example",
        ))
        .to("ufficio.tecnico@pec.comune.test")
        .subject(FORWARDED_SUBJECT)
        .date(time("2026-11-20T09:30:00+01:00"))
        .message_id("20261120093000.4711@bianchi-edilizia.example")
        .text("In allegato il preventivo richiesto.\nSaluti")
        .attachment("preventivo.pdf", "application/pdf", &pdf(9))
        .build()
}

/// The original a citizen sends; varied per fixture by the closures below.
fn original(subject: &'static str, message_id: &'static str, date: &'static str) -> OriginalSpec {
    OriginalSpec {
        from: Address::named("Mario Rossi", "mario.rossi@pec.esempio.test"),
        to: vec!["protocollo@pec.comune.test"],
        cc: Vec::new(),
        reply_to: None,
        subject,
        message_id,
        date,
        text: Some(
            "Buongiorno,\nsi trasmette la documentazione richiesta.\nCordiali saluti\nMario Rossi",
        ),
        html: None,
        charset: Charset::Utf8,
        encoding: TransferEncoding::QuotedPrintable,
        files: Vec::new(),
        tipo_ricevuta: None,
    }
}

fn pec(kind: Kind, identificativo: &'static str, data: &'static str) -> PecSpec {
    PecSpec {
        kind,
        virus: false,
        provider: esempio(),
        identificativo,
        data,
        ricevuta: None,
        consegna: Vec::new(),
        ricezione: Vec::new(),
        errore: "nessuno",
        errore_esteso: None,
        esterni: Vec::new(),
        line_ending: LineEnding::Crlf,
        lowercase_headers: false,
        daticert_encoding: DaticertEncoding::Base64,
        signature: Sig::Placeholder,
        list_copy: None,
    }
}

fn receipt(kind: ReceiptKind, data: &'static str) -> PecSpec {
    pec(
        Kind::Receipt(kind),
        "opec21011.20261127101500.31337.808.1.42@pec.esempio.test",
        data,
    )
}

/// The original of the receipt fixtures (one message sent by us, reported on by many receipts).
fn sent() -> OriginalSpec {
    OriginalSpec {
        from: Address::named("Ufficio Reclami", "reclami@pec.azienda.test"),
        to: vec![
            "cliente.verdi@pec.altrogestore.test",
            "anna.neri@example.com",
        ],
        cc: vec!["archivio@pec.azienda.test"],
        subject: "Risposta alla segnalazione n. 1234",
        text: Some(
            "Gentile cliente,\nin allegato la risposta alla sua segnalazione.\nUfficio Reclami",
        ),
        message_id: "zendesk-1234-5678@connector.azienda.test",
        date: "2026-11-27T10:14:58+01:00",
        files: vec![FileSpec {
            name: "risposta.pdf",
            content_type: "application/pdf",
            data: pdf(1),
            role: Role::Attachment,
        }],
        ..original("", "", "")
    }
}

/// Every fixture. Names start with `synthetic-`.
pub fn all() -> Vec<Fixture> {
    vec![
        // Envelopes.
        Fixture {
            name: "synthetic-envelope-rfc2231-attachment",
            original: OriginalSpec {
                cc: vec!["ragioneria@pec.comune.test"],
                html: Some("<p>Buongiorno,<br>si trasmette la fattura.</p>"),
                files: vec![FileSpec {
                    name: RFC2231_NAME,
                    content_type: "application/pdf",
                    data: pdf(2),
                    role: Role::Attachment,
                }],
                tipo_ricevuta: Some("completa"),
                ..original(
                    "Fattura n. 17/2026 – perché è scaduta",
                    "CAFE0001.5F3A@client.esempio.test",
                    "2026-11-27T10:14:59+01:00",
                )
            },
            pec: Some(PecSpec {
                ricevuta: Some("completa"),
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127101500.11111.101.1.7@pec.esempio.test",
                    "2026-11-27T10:15:00+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-html-only-lf-plain-daticert",
            original: OriginalSpec {
                text: None,
                html: Some(HTML_ONLY),
                ..original(
                    "Determina n. 42",
                    "det42.20261127@protocollo.esempio.test",
                    "2026-11-27T11:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                line_ending: LineEnding::Lf,
                daticert_encoding: DaticertEncoding::Plain,
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127110001.22222.202.1.8@pec.esempio.test",
                    "2026-11-27T11:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-iso-8859-1",
            original: OriginalSpec {
                text: Some(ISO_8859_1_TEXT),
                charset: Charset::Iso8859_1,
                encoding: TransferEncoding::QuotedPrintable,
                ..original(
                    "Qualità del servizio",
                    "latin1.0001@client.esempio.test",
                    "2026-06-15T08:00:00+02:00",
                )
            },
            pec: Some(PecSpec {
                ricevuta: Some("completa"),
                ..pec(
                    Kind::Envelope,
                    "opec21011.20260615080002.33333.303.1.9@pec.esempio.test",
                    "2026-06-15T08:00:02+02:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-windows-1252",
            original: OriginalSpec {
                text: Some(WINDOWS_1252_TEXT),
                charset: Charset::Windows1252,
                encoding: TransferEncoding::EightBit,
                ..original(
                    "Sollecito fattura novembre",
                    "cp1252.0002@client.esempio.test",
                    "2026-12-01T09:00:00+01:00",
                )
            },
            pec: Some(pec(
                Kind::Envelope,
                "opec21011.20261201090001.44444.404.1.10@pec.esempio.test",
                "2026-12-01T09:00:01+01:00",
            )),
        },
        Fixture {
            name: "synthetic-envelope-attached-eml",
            original: OriginalSpec {
                text: Some("Inoltro il preventivo ricevuto, con il documento firmato.\nSaluti"),
                files: vec![
                    FileSpec {
                        name: "inoltro.eml",
                        content_type: "message/rfc822",
                        data: forwarded_eml(),
                        role: Role::Message,
                    },
                    FileSpec {
                        name: "documento firmato.pdf.p7m",
                        content_type: "application/pkcs7-mime",
                        data: pdf(3),
                        role: Role::Attachment,
                    },
                ],
                tipo_ricevuta: Some("breve"),
                ..original(
                    "I: Preventivo lavori di manutenzione",
                    "fwd.0003@client.esempio.test",
                    "2026-11-27T12:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                ricevuta: Some("breve"),
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127120001.55555.505.1.11@pec.esempio.test",
                    "2026-11-27T12:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-inline-cid-unsigned",
            original: OriginalSpec {
                text: Some("Preventivo in allegato."),
                html: Some(CID_HTML),
                files: vec![
                    FileSpec {
                        name: "logo.png",
                        content_type: "image/png",
                        data: png(),
                        role: Role::Inline("logo.1@esempio.test"),
                    },
                    FileSpec {
                        name: "preventivo.pdf",
                        content_type: "application/pdf",
                        data: pdf(4),
                        role: Role::Attachment,
                    },
                ],
                ..original(
                    "Preventivo con logo",
                    "cid.0004@client.esempio.test",
                    "2026-11-27T13:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                signature: Sig::None,
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127130001.66666.606.1.12@pec.esempio.test",
                    "2026-11-27T13:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-list-copy",
            original: OriginalSpec {
                to: vec!["pec-utenti@lists.esempio.test"],
                ..original(
                    "Domanda sulla conservazione",
                    "list.0005@client.esempio.test",
                    "2026-11-27T14:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                esterni: vec!["pec-utenti@lists.esempio.test"],
                list_copy: Some(ListCopy {
                    subject_tag: Some("[pec-utenti]".to_owned()),
                    headers: vec![
                        (
                            "List-Id".to_owned(),
                            "Utenti PEC <pec-utenti.lists.esempio.test>".to_owned(),
                        ),
                        ("Precedence".to_owned(), "list".to_owned()),
                    ],
                    footer:
                        "_______________________________________________\npec-utenti mailing list\n\
                         https://lists.esempio.test/listinfo/pec-utenti\n"
                            .to_owned(),
                }),
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127140001.77777.707.1.13@pec.esempio.test",
                    "2026-11-27T14:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-lowercase-headers",
            original: OriginalSpec {
                reply_to: Some("segreteria@pec.esempio.test"),
                tipo_ricevuta: Some("sintetica"),
                ..original(
                    "Convocazione assemblea",
                    "lower.0006@client.esempio.test",
                    "2026-11-27T15:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                ricevuta: Some("sintetica"),
                lowercase_headers: true,
                daticert_encoding: DaticertEncoding::Plain,
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127150001.88888.808.1.14@pec.esempio.test",
                    "2026-11-27T15:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-envelope-signed-sandbox",
            original: OriginalSpec {
                from: Address::named("Sportello Sandbox", "sportello@pec.sandbox.test"),
                files: vec![FileSpec {
                    name: "ricevuta.pdf",
                    content_type: "application/pdf",
                    data: pdf(5),
                    role: Role::Attachment,
                }],
                ..original(
                    "Firma di prova",
                    "signed.0007@client.sandbox.test",
                    "2026-11-27T16:00:00+01:00",
                )
            },
            pec: Some(PecSpec {
                provider: sandbox(),
                ricevuta: Some("completa"),
                signature: Sig::Sandbox,
                ..pec(
                    Kind::Envelope,
                    "opec21011.20261127160001.99999.909.1.15@pec.sandbox.test",
                    "2026-11-27T16:00:01+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-anomalia",
            original: OriginalSpec {
                from: Address::named("Newsletter Fornitore", "news@fornitore.example"),
                to: vec!["protocollo@pec.comune.test"],
                files: vec![FileSpec {
                    name: "listino.pdf",
                    content_type: "application/pdf",
                    data: pdf(6),
                    role: Role::Attachment,
                }],
                ..original(
                    "Offerte di dicembre",
                    "news.2026.12@fornitore.example",
                    "2026-11-27T17:00:00+01:00",
                )
            },
            pec: Some(pec(
                Kind::Anomaly,
                "opec21011.20261127170002.12121.121.1.16@pec.esempio.test",
                "2026-11-27T17:00:02+01:00",
            )),
        },
        // Receipts and notices about one message we sent (`sent()`).
        Fixture {
            name: "synthetic-accettazione",
            original: sent(),
            pec: Some(PecSpec {
                esterni: vec!["anna.neri@example.com"],
                ..receipt(ReceiptKind::Accettazione, "2026-11-27T10:15:00+01:00")
            }),
        },
        Fixture {
            name: "synthetic-non-accettazione",
            original: sent(),
            pec: Some(PecSpec {
                errore: "altro",
                errore_esteso: Some(
                    "Messaggio non accettato: destinatari in copia nascosta (Bcc) non ammessi",
                ),
                ..receipt(ReceiptKind::NonAccettazione, "2026-11-27T10:15:00+01:00")
            }),
        },
        Fixture {
            name: "synthetic-non-accettazione-virus",
            original: sent(),
            pec: Some(PecSpec {
                virus: true,
                errore_esteso: Some("Virus rilevato: Eicar-Test-Signature"),
                ..receipt(ReceiptKind::NonAccettazione, "2026-11-27T10:15:00+01:00")
            }),
        },
        Fixture {
            name: "synthetic-presa-in-carico",
            original: sent(),
            pec: Some(PecSpec {
                provider: altro_gestore(),
                ricezione: vec!["cliente.verdi@pec.altrogestore.test"],
                signature: Sig::WithoutP7s,
                ..receipt(ReceiptKind::PresaInCarico, "2026-11-27T10:15:02+01:00")
            }),
        },
        Fixture {
            name: "synthetic-avvenuta-consegna-completa",
            original: sent(),
            pec: Some(PecSpec {
                provider: altro_gestore(),
                ricevuta: Some("completa"),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                ..receipt(ReceiptKind::AvvenutaConsegna, "2026-11-27T10:15:03+01:00")
            }),
        },
        Fixture {
            name: "synthetic-avvenuta-consegna-breve",
            original: OriginalSpec {
                tipo_ricevuta: Some("breve"),
                ..sent()
            },
            pec: Some(PecSpec {
                provider: altro_gestore(),
                ricevuta: Some("breve"),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                ..receipt(ReceiptKind::AvvenutaConsegna, "2026-11-27T10:15:03+01:00")
            }),
        },
        Fixture {
            name: "synthetic-avvenuta-consegna-sintetica",
            original: OriginalSpec {
                tipo_ricevuta: Some("sintetica"),
                ..sent()
            },
            pec: Some(PecSpec {
                ricevuta: Some("sintetica"),
                consegna: vec!["archivio@pec.azienda.test"],
                ..receipt(ReceiptKind::AvvenutaConsegna, "2026-11-27T10:15:02+01:00")
            }),
        },
        Fixture {
            name: "synthetic-errore-consegna-no-dest-lf",
            original: sent(),
            pec: Some(PecSpec {
                errore: "no-dest",
                errore_esteso: Some("5.1.1 - Altro Gestore PEC S.r.l. - indirizzo non valido"),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                line_ending: LineEnding::Lf,
                ..receipt(ReceiptKind::ErroreConsegna, "2026-11-27T10:16:00+01:00")
            }),
        },
        Fixture {
            name: "synthetic-errore-consegna-virus",
            original: sent(),
            pec: Some(PecSpec {
                virus: true,
                errore_esteso: Some("Virus rilevato: Eicar-Test-Signature"),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                ..receipt(ReceiptKind::ErroreConsegna, "2026-11-27T10:16:00+01:00")
            }),
        },
        Fixture {
            name: "synthetic-preavviso-errore-consegna",
            original: sent(),
            pec: Some(PecSpec {
                errore: "altro",
                errore_esteso: Some(
                    "5.4.1 - Esempio PEC S.p.A. - tempo massimo di consegna superato",
                ),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                ..receipt(
                    ReceiptKind::PreavvisoErroreConsegna,
                    "2026-11-27T22:15:00+01:00",
                )
            }),
        },
        Fixture {
            name: "synthetic-rilevazione-virus",
            original: sent(),
            pec: Some(PecSpec {
                provider: altro_gestore(),
                errore: "virus",
                errore_esteso: Some("Virus rilevato: Eicar-Test-Signature"),
                consegna: vec!["cliente.verdi@pec.altrogestore.test"],
                ..receipt(ReceiptKind::RilevazioneVirus, "2026-11-27T10:15:03+01:00")
            }),
        },
        // Ordinary mail.
        Fixture {
            name: "synthetic-non-pec",
            original: OriginalSpec {
                from: Address::named("Giulia Bianchi", "giulia.bianchi@example.com"),
                to: vec!["assistenza@azienda.test"],
                cc: vec!["marco.gialli@example.com"],
                reply_to: Some("giulia.b@example.com"),
                text: Some("Salve,\nnon riesco ad accedere al portale.\nGrazie"),
                html: Some("<p>Salve,<br>non riesco ad accedere al portale.</p><p>Grazie</p>"),
                files: vec![FileSpec {
                    name: "schermata.png",
                    content_type: "image/png",
                    data: png(),
                    role: Role::Attachment,
                }],
                ..original(
                    "Problema di accesso",
                    "CAF3.0008@mail.example.com",
                    "2026-11-27T18:00:00+01:00",
                )
            },
            pec: None,
        },
    ]
}
