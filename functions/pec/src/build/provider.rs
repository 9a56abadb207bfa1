//! Provider messages: [`PecBuilder`] and its options, the Italian notices.

use super::*;

/// A PEC provider (gestore): its name (daticert `gestore-emittente`) and its mail domain
/// (`posta-certificata@<domain>` signs and sends its messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub domain: String,
}

impl Provider {
    pub fn new(name: &str, domain: &str) -> Provider {
        Provider {
            name: name.to_owned(),
            domain: domain.to_owned(),
        }
    }

    /// `posta-certificata@<domain>`.
    pub fn address(&self) -> String {
        format!("posta-certificata@{}", self.domain)
    }
}

/// Line endings of the written message. The signature is always computed over the CRLF form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LineEnding {
    #[default]
    Crlf,
    /// As tools that store mail as files often write it.
    Lf,
}

/// How `daticert.xml` is transfer-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DaticertEncoding {
    /// base64 in 60-character lines, as every provider in the sample set writes it.
    #[default]
    Base64,
    /// The XML as text (`7bit`, or `8bit` when it has non-ASCII characters).
    Plain,
}

/// The S/MIME shell of a provider message.
#[derive(Debug, Clone, Default)]
pub enum SignatureMode {
    /// No `multipart/signed` at all: the top-level message is the `multipart/mixed`.
    None,
    /// `multipart/signed` whose only part is the signed content (no `smime.p7s`).
    WithoutP7s,
    /// A fake `smime.p7s` (`MII...njA==`), as anonymised samples carry.
    #[default]
    Placeholder,
    /// A real detached CMS signature by this identity (SHA-256, `micalg="sha-256"`), over the
    /// exact CRLF bytes of the signed part, with signingTime = the message Date.
    Sign(Box<SigningIdentity>),
}

impl SignatureMode {
    /// [`SignatureMode::Sign`] with this identity.
    pub fn signed_by(identity: SigningIdentity) -> SignatureMode {
        SignatureMode::Sign(Box::new(identity))
    }
}

/// A mailing-list copy: the provider message becomes the first part of an outer
/// `multipart/mixed` with the same top-level headers, and the list adds a footer part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCopy {
    /// Prepended to the Subject, e.g. `[pec-users]`.
    pub subject_tag: Option<String>,
    /// Headers the list adds (List-Id, ...), written after the copied ones.
    pub headers: Vec<(String, String)>,
    /// The footer text (ASCII).
    pub footer: String,
}

/// How the message is written (all independent of its content).
#[derive(Debug, Clone, Default)]
pub struct PecOptions {
    pub line_ending: LineEnding,
    /// Write the top-level header names in lower case (`x-trasporto: ...`).
    pub lowercase_headers: bool,
    pub daticert_encoding: DaticertEncoding,
    pub signature: SignatureMode,
    pub list_copy: Option<ListCopy>,
    /// Headers written first in the top-level header block (Received, Delivered-To, ...).
    pub headers: Vec<(String, String)>,
}

/// A message as a PEC provider writes it: a busta di trasporto ([`Kind::Envelope`]), a busta di
/// anomalia ([`Kind::Anomaly`]) or a receipt ([`Kind::Receipt`]).
///
/// The certification facts come from the [`Daticert`] (see [`daticert_from_original`]); the
/// builder sets its `tipo` from the kind and its `gestore_emittente` from the provider when
/// empty. `data` is required. The avvenuta-consegna variant is `daticert.ricevuta`
/// (`completa` when absent).
///
/// `postacert.eml` is written for envelopes, anomalies and avvenuta-consegna completa and breve
/// (pec-format §2). For envelopes and consegna receipts the original's Message-ID is replaced by
/// the identificativo and `X-Riferimento-Message-ID` is added, as the sender's provider does;
/// an anomaly keeps the message as received. In a *breve* receipt every attachment of the
/// original is replaced by a `text/plain` part with the same file name holding the SHA-1 hash
/// of its content (the RT says "attachments replaced by their hashes"; the exact shape is not
/// seen in public samples).
#[derive(Debug, Clone)]
pub struct PecBuilder {
    pub(super) kind: Kind,
    pub(super) provider: Provider,
    pub(super) daticert: Daticert,
    pub(super) original: Option<Vec<u8>>,
    pub(super) message_id: Option<String>,
    pub(super) date: Option<DateTime<FixedOffset>>,
    pub(super) to: Vec<Address>,
    pub(super) virus: bool,
    pub(super) options: PecOptions,
}

impl PecBuilder {
    pub fn new(kind: Kind, provider: Provider, daticert: Daticert) -> PecBuilder {
        PecBuilder {
            kind,
            provider,
            daticert,
            original: None,
            message_id: None,
            date: None,
            to: Vec::new(),
            virus: false,
            options: PecOptions::default(),
        }
    }

    /// The original message (wrapped as `postacert.eml` where the kind carries it).
    pub fn original(mut self, raw: &[u8]) -> PecBuilder {
        self.original = Some(raw.to_vec());
        self
    }

    /// The receipt's own Message-ID (default: derived from the identificativo, distinct per
    /// kind and recipient). Envelopes always use the identificativo.
    pub fn message_id(mut self, id: &str) -> PecBuilder {
        self.message_id = Some(normalize_msgid(id).to_owned());
        self
    }

    /// The Date header (default: daticert `data`).
    pub fn date(mut self, date: DateTime<FixedOffset>) -> PecBuilder {
        self.date = Some(date);
        self
    }

    /// The top-level To of a receipt (default: the original sender, daticert `mittente`).
    pub fn to(mut self, to: impl Into<Address>) -> PecBuilder {
        self.to.push(to.into());
        self
    }

    /// A virus notice: `X-VerificaSicurezza: errore`, the "PER VIRUS" subject prefix, and
    /// daticert `errore="virus"` unless another error is set.
    pub fn virus(mut self, virus: bool) -> PecBuilder {
        self.virus = virus;
        self
    }

    pub fn options(mut self, options: PecOptions) -> PecBuilder {
        self.options = options;
        self
    }

    pub fn line_ending(mut self, line_ending: LineEnding) -> PecBuilder {
        self.options.line_ending = line_ending;
        self
    }

    pub fn lowercase_headers(mut self, yes: bool) -> PecBuilder {
        self.options.lowercase_headers = yes;
        self
    }

    pub fn daticert_encoding(mut self, encoding: DaticertEncoding) -> PecBuilder {
        self.options.daticert_encoding = encoding;
        self
    }

    pub fn signature(mut self, signature: SignatureMode) -> PecBuilder {
        self.options.signature = signature;
        self
    }

    pub fn list_copy(mut self, list_copy: ListCopy) -> PecBuilder {
        self.options.list_copy = Some(list_copy);
        self
    }

    /// A header written first in the top-level block.
    pub fn header(mut self, name: &str, value: &str) -> PecBuilder {
        self.options
            .headers
            .push((name.to_owned(), value.to_owned()));
        self
    }

    /// The certification data as written into `daticert.xml`.
    pub fn effective_daticert(&self) -> Daticert {
        let mut d = self.daticert.clone();
        d.tipo = match self.kind {
            Kind::Envelope | Kind::Anomaly | Kind::NonPec => "posta-certificata".to_owned(),
            Kind::Receipt(r) => r.as_str().to_owned(),
        };
        if d.gestore_emittente.is_none() {
            d.gestore_emittente = Some(self.provider.name.clone());
        }
        if d.errore.is_empty() || (self.virus && d.errore == "nessuno") {
            d.errore = if self.virus { "virus" } else { "nessuno" }.to_owned();
        }
        d
    }

    /// Whether this message carries `postacert.eml` (pec-format §2).
    pub fn has_postacert(&self) -> bool {
        match self.kind {
            Kind::Envelope | Kind::Anomaly => true,
            Kind::Receipt(ReceiptKind::AvvenutaConsegna) => self.variant() != "sintetica",
            _ => false,
        }
    }

    pub(super) fn variant(&self) -> &'static str {
        crate::TipoRicevuta::from_value(self.daticert.ricevuta.as_deref().unwrap_or("completa"))
            .as_str()
    }

    /// The message bytes.
    pub fn build(&self) -> Result<Vec<u8>, BuildError> {
        let kind = self.kind.as_str();
        if self.kind == Kind::NonPec {
            return Err(BuildError::NotPec(kind));
        }
        let d = self.effective_daticert();
        let data = d.data.ok_or(BuildError::MissingData(kind))?;
        let postacert = if self.has_postacert() {
            let raw = self
                .original
                .as_deref()
                .ok_or(BuildError::MissingOriginal(kind))?;
            let raw = crlf(raw);
            Some(match self.kind {
                Kind::Anomaly => raw,
                _ => {
                    let id = d.identificativo.as_deref().unwrap_or_default();
                    let rewritten = replace_message_id(&raw, id, d.msgid.as_deref());
                    if self.kind == Kind::Receipt(ReceiptKind::AvvenutaConsegna)
                        && self.variant() == "breve"
                    {
                        replace_attachments_with_hashes(&rewritten)
                    } else {
                        rewritten
                    }
                }
            })
        } else {
            None
        };

        let mut seed = Fnv::new();
        seed.write(kind.as_bytes());
        seed.write(d.identificativo.as_deref().unwrap_or_default().as_bytes());
        for c in d.consegna.iter().chain(&d.ricezione) {
            seed.write(c.as_bytes());
        }
        seed.write(data.to_rfc3339().as_bytes());
        let seed = seed.finish();
        let mut boundaries = ProviderBoundaries::new(data.timestamp(), seed);

        // The signed content: multipart/mixed (notice, daticert.xml, postacert.eml).
        let notice = Notice::new(self.kind, self.virus, &d, self.variant());
        let mixed_boundary = boundaries.next();
        let alternative = Part::multipart(
            "alternative",
            boundaries.next(),
            vec![
                Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/plain; charset=\"iso-8859-1\"".to_owned(),
                        ),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                        (
                            "Content-Transfer-Encoding".to_owned(),
                            "quoted-printable".to_owned(),
                        ),
                    ],
                    quoted_printable(&crlf(&Charset::Iso8859_1.encode(&notice.text))).into_bytes(),
                ),
                Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/html; charset=\"iso-8859-1\"".to_owned(),
                        ),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                        (
                            "Content-Transfer-Encoding".to_owned(),
                            "quoted-printable".to_owned(),
                        ),
                    ],
                    quoted_printable(&crlf(&Charset::Iso8859_1.encode(&notice.html))).into_bytes(),
                ),
            ],
        );
        let xml = daticert_xml(&d);
        let (xml_cte, xml_body) = match self.options.daticert_encoding {
            DaticertEncoding::Base64 => ("base64", base64_lines(xml.as_bytes(), 60).into_bytes()),
            DaticertEncoding::Plain => (
                if xml.is_ascii() { "7bit" } else { "8bit" },
                crlf(xml.as_bytes()),
            ),
        };
        let mut parts = vec![
            alternative,
            Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        "application/xml; name=\"daticert.xml\"".to_owned(),
                    ),
                    (
                        "Content-Disposition".to_owned(),
                        "inline; filename=\"daticert.xml\"".to_owned(),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), xml_cte.to_owned()),
                ],
                xml_body,
            ),
        ];
        if let Some(postacert) = postacert {
            let cte = if postacert.is_ascii() { "7bit" } else { "8bit" };
            parts.push(Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        "message/rfc822; name=\"postacert.eml\"".to_owned(),
                    ),
                    (
                        "Content-Disposition".to_owned(),
                        "inline; filename=\"postacert.eml\"".to_owned(),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), cte.to_owned()),
                ],
                postacert,
            ));
        }
        let mut mixed = Part::multipart("mixed", mixed_boundary, parts);
        // Providers fold the alternative's Content-Type but not the mixed one.
        mixed.headers[0].1 = mixed.headers[0].1.replace(";\r\n ", "; ");
        mixed
            .headers
            .push(("Content-Transfer-Encoding".to_owned(), "binary".to_owned()));
        let signed_mime_version = self.options.signature_is_signed();
        if signed_mime_version {
            mixed
                .headers
                .push(("MIME-Version".to_owned(), "1.0".to_owned()));
        }
        if let Body::Multipart { parts, .. } = &mut mixed.body
            && let Some(alt) = parts.first_mut()
        {
            alt.headers
                .push(("Content-Transfer-Encoding".to_owned(), "binary".to_owned()));
        }
        let signed_content = mixed.render();

        // The entity the top-level headers describe.
        let entity = self.sign(&signed_content, seed, self.date.unwrap_or(data))?;

        let mut headers = self.top_headers(&d, data)?;
        let mut out = Vec::new();
        match &self.options.list_copy {
            None => {
                headers.push(("MIME-Version".to_owned(), "1.0".to_owned()));
                headers.extend(entity.headers.iter().cloned());
                if let SignatureMode::None = self.options.signature {
                } else if let Some(pos) = headers.iter().position(|(n, _)| n == "Message-ID") {
                    // Providers write Message-ID last, after Content-Type.
                    let id = headers.remove(pos);
                    headers.push(id);
                }
                self.write_top_headers(&mut out, &headers);
                out.extend_from_slice(b"\r\n");
                write_body(&mut out, &entity.body);
            }
            Some(list) => {
                if let Some(tag) = &list.subject_tag {
                    for (name, value) in headers.iter_mut() {
                        if name == "Subject" {
                            *value = format!("{tag} {value}");
                        }
                    }
                }
                headers.extend(list.headers.iter().cloned());
                headers.push(("MIME-Version".to_owned(), "1.0".to_owned()));
                let mut first = entity;
                if !first.headers.iter().any(|(n, _)| n == "MIME-Version") {
                    first
                        .headers
                        .push(("MIME-Version".to_owned(), "1.0".to_owned()));
                }
                let footer = Part::leaf(
                    vec![
                        (
                            "Content-Type".to_owned(),
                            "text/plain; charset=\"us-ascii\"".to_owned(),
                        ),
                        ("MIME-Version".to_owned(), "1.0".to_owned()),
                        ("Content-Transfer-Encoding".to_owned(), "7bit".to_owned()),
                        ("Content-Disposition".to_owned(), "inline".to_owned()),
                    ],
                    crlf(list.footer.as_bytes()),
                );
                let boundary =
                    format!("==============={:019}==", seed % 10_000_000_000_000_000_000);
                let wrapper = Part::multipart("mixed", boundary, vec![first, footer]);
                headers.extend(wrapper.headers.iter().cloned());
                self.write_top_headers(&mut out, &headers);
                out.extend_from_slice(b"\r\n");
                write_body(&mut out, &wrapper.body);
            }
        }
        Ok(match self.options.line_ending {
            LineEnding::Crlf => out,
            LineEnding::Lf => to_lf(&out),
        })
    }

    /// Wraps the signed content in the S/MIME shell chosen by the options.
    pub(super) fn sign(
        &self,
        content: &[u8],
        seed: u64,
        signing_time: DateTime<FixedOffset>,
    ) -> Result<Part, BuildError> {
        // Real signatures use SHA-256 and the RFC 5751 names (as the 2021 go-pec samples); the
        // unsigned shells look like the Aruba/Sogei ones (SHA-1, `x-pkcs7-signature`).
        let (protocol, micalg) = match &self.options.signature {
            SignatureMode::Sign(_) => (
                "application/pkcs7-signature",
                DigestAlgorithm::Sha256.micalg(),
            ),
            _ => ("application/x-pkcs7-signature", "sha1"),
        };
        let p7s = |body: Vec<u8>| {
            Part::leaf(
                vec![
                    (
                        "Content-Type".to_owned(),
                        format!("{protocol}; name=\"smime.p7s\""),
                    ),
                    ("Content-Transfer-Encoding".to_owned(), "base64".to_owned()),
                    (
                        "Content-Disposition".to_owned(),
                        "attachment; filename=\"smime.p7s\"".to_owned(),
                    ),
                ],
                body,
            )
        };
        let p7s = match &self.options.signature {
            SignatureMode::None => {
                // The mixed entity itself: split its rendered form back into headers and body.
                return Ok(Part::rendered_entity(content));
            }
            SignatureMode::WithoutP7s => None,
            SignatureMode::Placeholder => Some(p7s(b"MII...njA==\r\n".to_vec())),
            SignatureMode::Sign(identity) => {
                let der = sign_detached(content, identity, signing_time.with_timezone(&Utc))
                    .map_err(|e| BuildError::Signing {
                        kind: self.kind.as_str(),
                        reason: e.to_string(),
                    })?;
                Some(p7s(base64_lines(&der, 64).into_bytes()))
            }
        };
        let digest = Sha1::new()
            .chain_update(content)
            .chain_update(seed.to_be_bytes())
            .finalize();
        let mut boundary = String::from("----");
        for b in &digest[..16] {
            let _ = write!(boundary, "{b:02X}");
        }
        let mut parts = vec![Part::raw(content.to_vec())];
        parts.extend(p7s);
        let mut part = Part::multipart("signed", boundary.clone(), parts);
        part.headers[0].1 = format!(
            "multipart/signed; protocol=\"{protocol}\"; micalg=\"{micalg}\"; boundary=\"{boundary}\""
        );
        if let Body::Multipart { preamble, .. } = &mut part.body {
            *preamble = Some("This is an S/MIME signed message\r\n".to_owned());
        }
        Ok(part)
    }

    /// The provider's top-level headers (pec-format §3), in the order providers write them;
    /// MIME headers are added by the caller.
    pub(super) fn top_headers(
        &self,
        d: &Daticert,
        data: DateTime<FixedOffset>,
    ) -> Result<Vec<(String, String)>, BuildError> {
        let mut h: Vec<(String, String)> = self.options.headers.clone();
        let prefix = crate::subject::prefix(self.kind, self.virus, false).unwrap_or_default();
        let subject = format!("{prefix}{}", d.oggetto.as_deref().unwrap_or_default());
        h.push(("Subject".to_owned(), subject_value(&subject)));
        if let Some(msgid) = &d.msgid {
            h.push((
                "X-Riferimento-Message-ID".to_owned(),
                format!("<{}>", normalize_msgid(msgid)),
            ));
        }
        let date = self.date.unwrap_or(data).to_rfc2822();
        h.push(("Date".to_owned(), date));
        let identificativo = d.identificativo.clone().unwrap_or_default();
        match self.kind {
            Kind::Envelope | Kind::Anomaly => {
                let mittente = d.mittente.clone().unwrap_or_default();
                if let Some(risposte) = &d.risposte {
                    h.push(("Reply-To".to_owned(), risposte.clone()));
                }
                let (to, cc) = self.original_recipients(d);
                if !to.is_empty() {
                    h.push(("To".to_owned(), to));
                }
                if !cc.is_empty() {
                    h.push(("Cc".to_owned(), cc));
                }
                let trasporto = if self.kind == Kind::Envelope {
                    "posta-certificata"
                } else {
                    "errore"
                };
                h.push(("X-Trasporto".to_owned(), trasporto.to_owned()));
                h.push((
                    "From".to_owned(),
                    format!(
                        "\"Per conto di: {}\" <{}>",
                        mittente.replace('"', ""),
                        self.provider.address()
                    ),
                ));
                if let (Kind::Envelope, Some(tipo)) = (self.kind, &d.ricevuta) {
                    h.push(("X-TipoRicevuta".to_owned(), tipo.clone()));
                }
                h.push(("Message-ID".to_owned(), format!("<{identificativo}>")));
            }
            Kind::Receipt(r) => {
                let id = self
                    .message_id
                    .clone()
                    .unwrap_or_else(|| self.receipt_id(d, r));
                h.push(("Message-ID".to_owned(), format!("<{id}>")));
                let to = if self.to.is_empty() {
                    d.mittente.clone().unwrap_or_default()
                } else {
                    self.to
                        .iter()
                        .map(Address::to_header)
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                h.push(("To".to_owned(), fold("To", &to)));
                h.push(("X-Ricevuta".to_owned(), r.as_str().to_owned()));
                if self.virus {
                    h.push(("X-VerificaSicurezza".to_owned(), "errore".to_owned()));
                }
                h.push(("From".to_owned(), self.provider.address()));
            }
            Kind::NonPec => return Err(BuildError::NotPec(self.kind.as_str())),
        }
        Ok(h)
    }

    /// To and Cc of an envelope: the original's, as written; else the daticert destinatari.
    pub(super) fn original_recipients(&self, d: &Daticert) -> (String, String) {
        let from_original = self.original.as_deref().and_then(|raw| {
            let (headers, _) = mailparse::parse_headers(raw).ok()?;
            let raw_value = |name: &str| {
                headers
                    .get_first_header(name)
                    .map(|h| String::from_utf8_lossy(h.get_value_raw()).trim().to_owned())
                    .unwrap_or_default()
            };
            Some((raw_value("To"), raw_value("Cc")))
        });
        match from_original {
            Some((to, cc)) if !to.is_empty() || !cc.is_empty() => (crlf_str(&to), crlf_str(&cc)),
            _ => {
                let all: Vec<&str> = d.destinatari.iter().map(|x| x.address.as_str()).collect();
                (fold("To", &all.join(", ")), String::new())
            }
        }
    }

    /// A receipt's own id: the identificativo with a number derived from the kind and the
    /// recipient inserted before its last component (Aruba: `...1.63@` → `...1.358.63@`).
    pub(super) fn receipt_id(&self, d: &Daticert, kind: ReceiptKind) -> String {
        let identificativo = d.identificativo.as_deref().unwrap_or("pec");
        let local = identificativo.split('@').next().unwrap_or(identificativo);
        let mut h = Fnv::new();
        h.write(kind.as_str().as_bytes());
        for c in d.consegna.iter().chain(&d.ricezione) {
            h.write(c.as_bytes());
        }
        let n = h.finish() % 900_000 + 100_000;
        match local.rsplit_once('.') {
            Some((head, last)) => format!("{head}.{n}.{last}@{}", self.provider.domain),
            None => format!("{local}.{n}@{}", self.provider.domain),
        }
    }

    pub(super) fn write_top_headers(&self, out: &mut Vec<u8>, headers: &[(String, String)]) {
        if self.options.lowercase_headers {
            let lower: Vec<(String, String)> = headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            write_headers(out, &lower);
        } else {
            write_headers(out, headers);
        }
    }
}

impl PecOptions {
    pub(super) fn signature_is_signed(&self) -> bool {
        !matches!(self.signature, SignatureMode::None)
    }
}

/// The human-readable notice of a provider message (text and HTML), in Italian.
pub(super) struct Notice {
    pub(super) text: String,
    pub(super) html: String,
}

impl Notice {
    pub(super) fn new(kind: Kind, virus: bool, d: &Daticert, variant: &str) -> Notice {
        let (giorno, ora, zona) = match d.data {
            Some(t) => (
                t.format("%d/%m/%Y").to_string(),
                t.format("%H:%M:%S").to_string(),
                t.format("%z").to_string(),
            ),
            None => Default::default(),
        };
        let quando = format!("Il giorno {giorno} alle ore {ora} ({zona})");
        let oggetto = d.oggetto.clone().unwrap_or_default();
        let mittente = d.mittente.clone().unwrap_or_default();
        let id = d.identificativo.clone().unwrap_or_default();
        let destinatari: Vec<String> = d
            .destinatari
            .iter()
            .map(|x| {
                let tipo = if x.tipo == "esterno" {
                    "posta ordinaria"
                } else {
                    "posta certificata"
                };
                format!("{} (\"{tipo}\")", x.address)
            })
            .collect();
        let consegna = d.consegna.join(", ");
        let errore = d
            .errore_esteso
            .clone()
            .unwrap_or_else(|| match d.errore.as_str() {
                "virus" => "virus informatico rilevato".to_owned(),
                "no-dest" => "destinatario non valido".to_owned(),
                "no-dominio" => "dominio non valido".to_owned(),
                _ => "errore non specificato".to_owned(),
            });
        let gestore = d.gestore_emittente.clone().unwrap_or_default();
        let lista = destinatari.join("\n");
        let (title, body): (&str, String) = match kind {
            Kind::Envelope | Kind::NonPec => (
                "Messaggio di posta certificata",
                format!(
                    "{quando} il messaggio\n\"{oggetto}\" è stato inviato da \"{mittente}\"\n\
                     indirizzato a:\n{lista}\n\nIl messaggio originale è incluso in allegato."
                ),
            ),
            Kind::Anomaly => (
                "Anomalia nel messaggio",
                format!(
                    "{quando} è stato ricevuto il messaggio\n\"{oggetto}\" proveniente da \
                     \"{mittente}\"\nindirizzato a:\n{lista}\n\nIl messaggio non è un messaggio di \
                     posta certificata valido: viene consegnato\nall'interno di una busta di anomalia. \
                     Il messaggio originale è incluso in allegato."
                ),
            ),
            Kind::Receipt(r) => match r {
                ReceiptKind::Accettazione => (
                    "Ricevuta di accettazione",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nè stato accettato dal sistema ed inoltrato."
                    ),
                ),
                ReceiptKind::NonAccettazione if virus => (
                    "Avviso di non accettazione per virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nè stato rilevato un problema di sicurezza: \
                         {errore}.\nIl messaggio non è stato accettato dal sistema."
                    ),
                ),
                ReceiptKind::NonAccettazione => (
                    "Avviso di non accettazione",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{lista}\nnon è stato accettato dal sistema per il \
                         seguente errore:\n{errore}\nIl messaggio non è stato inoltrato."
                    ),
                ),
                ReceiptKind::PresaInCarico => (
                    "Ricevuta di presa in carico",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a:\n{}\nè stato preso in carico dal gestore {gestore}.",
                        if d.ricezione.is_empty() {
                            lista.clone()
                        } else {
                            d.ricezione.join("\n")
                        }
                    ),
                ),
                ReceiptKind::AvvenutaConsegna => (
                    "Ricevuta di avvenuta consegna",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         ed indirizzato a \"{consegna}\"\nè stato consegnato nella casella di \
                         destinazione.{}",
                        match variant {
                            "breve" =>
                                "\nIl messaggio originale è incluso in allegato; i suoi \
                                        allegati sono sostituiti\ndai rispettivi hash.",
                            "sintetica" => "",
                            _ => "\nIl messaggio originale è incluso in allegato.",
                        }
                    ),
                ),
                ReceiptKind::ErroreConsegna if virus => (
                    "Avviso di mancata consegna per virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato un virus: \
                         {errore}.\nIl messaggio non è stato consegnato."
                    ),
                ),
                ReceiptKind::ErroreConsegna => (
                    "Avviso di mancata consegna",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato il seguente \
                         errore:\n{errore}\nIl messaggio non è stato consegnato."
                    ),
                ),
                ReceiptKind::PreavvisoErroreConsegna => (
                    "Avviso di mancata consegna per superamento dei tempi massimi",
                    format!(
                        "{quando} il messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nnon risulta ancora consegnato: \
                         entro le prime 12 ore dall'invio\nnon è pervenuta la ricevuta di avvenuta \
                         consegna.\nIl messaggio potrebbe essere consegnato in seguito."
                    ),
                ),
                ReceiptKind::RilevazioneVirus => (
                    "Avviso di rilevazione virus",
                    format!(
                        "{quando} nel messaggio\n\"{oggetto}\" proveniente da \"{mittente}\"\n\
                         e destinato all'utente \"{consegna}\"\nè stato rilevato un virus: {errore}.\n\
                         Il messaggio non verrà consegnato."
                    ),
                ),
            },
        };
        let footer = format!("Identificativo messaggio: {id}");
        let text = format!(
            "{title}\n\n  -----\n\n{body}\n{footer}\nL'allegato daticert.xml contiene informazioni di \
             servizio sulla trasmissione\n"
        );
        let html_body = html_escape(&body).replace('\n', "<br>\n");
        let html = format!(
            "<html>\n<head><title>{t}</title></head>\n<body>\n<h3>{t}</h3>\n<hr><br>\n{html_body}<br>\n\
             {f}<br>\n</body>\n</html>\n",
            t = html_escape(title),
            f = html_escape(&footer),
        );
        Notice { text, html }
    }
}

/// Text as the providers' notices write it in HTML: markup escaped, and ASCII only (the Italian
/// accented letters as named entities, any other character as a numeric one).
pub(super) fn html_escape(s: &str) -> String {
    let escaped = escape_html(s);
    let mut out = String::with_capacity(escaped.len());
    for c in escaped.chars() {
        match c {
            'à' => out.push_str("&agrave;"),
            'è' => out.push_str("&egrave;"),
            'é' => out.push_str("&eacute;"),
            'ì' => out.push_str("&igrave;"),
            'ò' => out.push_str("&ograve;"),
            'ù' => out.push_str("&ugrave;"),
            c if c.is_ascii() => out.push(c),
            c => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
        }
    }
    out
}

/// Replaces the original's Message-ID by `<identificativo>` and sets `X-Riferimento-Message-ID`
/// to the client's id, as the sender's provider does (pec-format §3.2). Input is CRLF.
pub(super) fn replace_message_id(raw: &[u8], identificativo: &str, msgid: Option<&str>) -> Vec<u8> {
    let (head, rest) = split_header_block(raw);
    let mut out = Vec::with_capacity(raw.len() + 200);
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            skipping = name == "message-id" || name == "x-riferimento-message-id";
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("Message-ID: <{identificativo}>\r\n").as_bytes());
    if let Some(msgid) = msgid {
        out.extend_from_slice(
            format!("X-Riferimento-Message-ID: <{}>\r\n", normalize_msgid(msgid)).as_bytes(),
        );
    }
    out.extend_from_slice(rest);
    out
}

/// Splits a CRLF message into its header lines (without the blank line) and the rest (the
/// blank line and the body).
pub(super) fn split_header_block(raw: &[u8]) -> (&[u8], &[u8]) {
    if raw.starts_with(b"\r\n") {
        return (&[], raw);
    }
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&raw[..i + 2], &raw[i + 2..]),
        None => (raw, &[]),
    }
}

/// The *breve* form of an original: each attachment (a leaf part with a file name, or an
/// attached message) becomes a `text/plain` part with the same file name whose content is
/// `SHA-1: <hex digest of the decoded content>`.
pub(super) fn replace_attachments_with_hashes(raw: &[u8]) -> Vec<u8> {
    let Ok(mail) = mailparse::parse_mail(raw) else {
        return raw.to_vec();
    };
    let mut spans: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    collect_attachment_spans(&mail, raw, true, &mut spans);
    spans.sort_by_key(|s| s.0);
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (start, end, replacement) in spans {
        if start < at {
            continue;
        }
        out.extend_from_slice(&raw[at..start]);
        out.extend_from_slice(&replacement);
        at = end;
    }
    out.extend_from_slice(&raw[at..]);
    out
}

pub(super) fn collect_attachment_spans(
    part: &ParsedMail<'_>,
    raw: &[u8],
    top: bool,
    out: &mut Vec<(usize, usize, Vec<u8>)>,
) {
    let mime = part.ctype.mimetype.to_ascii_lowercase();
    if mime.starts_with("multipart/") {
        for sub in &part.subparts {
            collect_attachment_spans(sub, raw, false, out);
        }
        return;
    }
    if top {
        return;
    }
    let disposition = part.get_content_disposition();
    let filename = disposition
        .params
        .get("filename")
        .or_else(|| part.ctype.params.get("name"))
        .cloned();
    let is_attachment = mime == "message/rfc822"
        || filename.is_some()
        || disposition.disposition == mailparse::DispositionType::Attachment;
    if !is_attachment {
        return;
    }
    let start = (part.raw_bytes.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
    let end = start + part.raw_bytes.len();
    if end > raw.len() {
        return;
    }
    let content = part.get_body_raw().unwrap_or_default();
    let hex = hex(&Sha1::digest(&content));
    let name = filename.unwrap_or_else(|| "allegato".to_owned());
    let mut replacement = Vec::new();
    write_headers(
        &mut replacement,
        &[
            (
                "Content-Type".to_owned(),
                format!(
                    "text/plain; charset=\"us-ascii\";\r\n {}",
                    param("name", &name)
                ),
            ),
            (
                "Content-Disposition".to_owned(),
                format!("attachment;\r\n {}", param("filename", &name)),
            ),
            ("Content-Transfer-Encoding".to_owned(), "7bit".to_owned()),
        ],
    );
    replacement.extend_from_slice(format!("\r\nSHA-1: {hex}\r\n").as_bytes());
    out.push((start, end, replacement));
}
