//! The behaviour of a PEC provider (*gestore*), as pure code: no sockets, no storage.
//!
//! [`PecProvider`] decides what a submission or an incoming ordinary mail produces, following
//! `reference/pec-format.md`:
//!
//! * a submission ([`PecProvider::submit`]) is checked against the access-point rules (§11:
//!   `From` = SMTP reverse-path = the authenticated mailbox, every recipient in `To`/`Cc`, no
//!   `Bcc`, message size × recipients within the limit). A refused one gets an *avviso di non
//!   accettazione* (`errore="altro"`) in the sender's mailbox and nothing else. An accepted one
//!   gets an *accettazione*, a *busta di trasporto* in the mailbox of each hosted recipient, and
//!   per hosted recipient an *avvenuta consegna* (completa, breve or sintetica as asked with
//!   `X-TipoRicevuta`, else the provider's default) or, for a mailbox that does not exist, an
//!   *avviso di mancata consegna*;
//! * ordinary mail from outside to a hosted mailbox ([`PecProvider::receive_external`]) becomes
//!   a *busta di anomalia*.
//!
//! Every message gets a fresh PEC *identificativo* (`opec<n>.<YYYYMMDDhhmmss>@<domain>`), which
//! replaces the client Message-ID in the envelope and in `postacert.eml`; the client id survives
//! in `X-Riferimento-Message-ID` and daticert `<msgid>`. Every provider message carries
//! `daticert.xml` and is S/MIME signed by [`SigningIdentity::sandbox`] (a test CA, so
//! `functions/pec` reports `untrusted` unless that CA is configured as a trust anchor).
//!
//! Recipients on domains the provider does not host are accepted but not delivered (no
//! provider-to-provider transport, no presa in carico); with [`Quirks::preavviso_for_external`]
//! the sender gets, for each of them, the *preavviso di mancata consegna* a provider sends when
//! 12 hours pass without a delivery.
//!
//! Real providers differ in details that clients trip on; [`Quirks`] switches them on:
//! lower-case top-level header names, `errore="altro"` (Aruba) instead of `no-dest` for a
//! mailbox that does not exist, the 12-hour preavviso, and receipts that arrive late
//! ([`Delivery::delay`], honoured by the running simulator).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Local};
use pec::build::{PecBuilder, Provider, SignatureMode, daticert_from_original};
use pec::signature::SigningIdentity;
use pec::{Kind, ReceiptKind, TipoRicevuta};

/// The RFC 6109 §3.1.1 limit on message size × number of recipients ("30 MB").
pub const DEFAULT_SIZE_LIMIT: usize = 30 * 1024 * 1024;

/// A message handed to the provider by an authenticated SMTP client.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The mailbox the client authenticated as.
    pub authenticated_user: &'a str,
    /// The SMTP reverse-path (`MAIL FROM`).
    pub mail_from: &'a str,
    /// The SMTP forward-paths (`RCPT TO`).
    pub recipients: &'a [String],
    /// The message as submitted.
    pub raw: &'a [u8],
}

/// A message the provider puts in one of its mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The address whose mailbox receives it.
    pub mailbox: String,
    pub raw: Vec<u8>,
    pub kind: Kind,
    /// How long after the submission it reaches the mailbox (zero: at once).
    pub delay: Duration,
}

/// Real-provider behaviours a client must cope with, off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Top-level header names written in lower case (`x-ricevuta: accettazione`).
    pub lowercase_headers: bool,
    /// A mailbox that does not exist is reported with daticert `errore="altro"` (as Aruba
    /// does) instead of `no-dest`.
    pub altro_for_unknown_mailbox: bool,
    /// Each recipient on a domain the provider does not host gets the sender a *preavviso di
    /// mancata consegna* (`preavviso-errore-consegna`, errore-esteso `5.4.1`), dated 12 hours
    /// after the submission — as if no receipt came back in time.
    pub preavviso_for_external: bool,
    /// Receipts of delivery (avvenuta consegna, mancata consegna, preavviso) reach the sender
    /// this long after the submission; the accettazione and the envelopes are not delayed.
    pub receipt_delay: Duration,
}

/// How long a provider waits for a delivery before the preavviso (pec-format §9).
pub const PREAVVISO_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(12);

/// A simulated PEC provider hosting some domains.
#[derive(Debug, Clone)]
pub struct PecProvider {
    gestore: String,
    domains: Vec<String>,
    counter: u64,
    size_limit: usize,
    receipt_type: TipoRicevuta,
    known_mailboxes: Option<HashSet<String>>,
    quirks: Quirks,
    clock: Option<DateTime<FixedOffset>>,
}

impl PecProvider {
    /// A provider named `gestore` (daticert `gestore-emittente`) hosting `domains`. Its own
    /// address is `posta-certificata@<first domain>`; the sandbox signing identity is issued for
    /// `posta-certificata@pec.sandbox.test`, so that should be the first domain.
    pub fn new(gestore: &str, domains: &[&str]) -> Self {
        PecProvider {
            gestore: gestore.to_owned(),
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            counter: 0,
            size_limit: DEFAULT_SIZE_LIMIT,
            receipt_type: TipoRicevuta::Completa,
            known_mailboxes: None,
            quirks: Quirks::default(),
            clock: None,
        }
    }

    /// The limit on message size × number of recipients (default [`DEFAULT_SIZE_LIMIT`]).
    pub fn with_size_limit(mut self, bytes: usize) -> Self {
        self.size_limit = bytes;
        self
    }

    /// The avvenuta-consegna variant used when the message has no `X-TipoRicevuta`.
    pub fn with_receipt_type(mut self, tipo: TipoRicevuta) -> Self {
        self.receipt_type = tipo;
        self
    }

    /// The hosted mailboxes that exist. Without this, every hosted address exists unless its
    /// local part contains `unknown`.
    pub fn with_mailboxes(mut self, mailboxes: &[&str]) -> Self {
        self.known_mailboxes = Some(mailboxes.iter().map(|m| m.to_ascii_lowercase()).collect());
        self
    }

    /// Adds one existing mailbox (switches to the explicit list of [`Self::with_mailboxes`]).
    pub fn add_mailbox(&mut self, mailbox: &str) {
        self.known_mailboxes
            .get_or_insert_with(HashSet::new)
            .insert(mailbox.to_ascii_lowercase());
    }

    /// Switches real-provider quirks on (see [`Quirks`]).
    pub fn with_quirks(mut self, quirks: Quirks) -> Self {
        self.quirks = quirks;
        self
    }

    /// Changes the quirks of a provider already in use.
    pub fn set_quirks(&mut self, quirks: Quirks) {
        self.quirks = quirks;
    }

    pub fn quirks(&self) -> &Quirks {
        &self.quirks
    }

    /// Fixes the provider's clock (daticert `data`, Date headers, identificativi).
    pub fn with_clock(mut self, now: DateTime<FixedOffset>) -> Self {
        self.clock = Some(now);
        self
    }

    pub fn gestore(&self) -> &str {
        &self.gestore
    }

    pub fn domains(&self) -> &[String] {
        &self.domains
    }

    /// Whether `address` is on a domain this provider hosts.
    pub fn hosts(&self, address: &str) -> bool {
        domain_of(address).is_some_and(|d| self.domains.contains(&d))
    }

    /// Whether `address` is a hosted mailbox that exists.
    pub fn mailbox_exists(&self, address: &str) -> bool {
        if !self.hosts(address) {
            return false;
        }
        let address = address.trim().to_ascii_lowercase();
        match &self.known_mailboxes {
            Some(known) => known.contains(&address),
            None => {
                let local = address.rsplit_once('@').map_or("", |(l, _)| l);
                !local.contains("unknown")
            }
        }
    }

    /// What a submission produces: the accettazione (or avviso di non accettazione) for the
    /// sender, a busta di trasporto for each hosted recipient, and an avvenuta consegna (or
    /// avviso di mancata consegna for a hosted mailbox that does not exist) for the sender per
    /// hosted recipient.
    pub fn submit(&mut self, s: &Submission) -> Vec<Delivery> {
        let now = self.now();
        let identificativo = self.next_identificativo(now);
        let mut base = daticert_from_original(s.raw);
        base.gestore_emittente = Some(self.gestore.clone());
        base.data = Some(now);
        base.identificativo = Some(identificativo);
        base.ricevuta = None;
        let sender = s.authenticated_user.to_owned();

        if let Err(reason) = self.check(s, &base) {
            let mut d = base;
            d.errore = "altro".to_owned();
            d.errore_esteso = Some(format!("E - {} - {reason}", self.gestore));
            let raw = self.build(
                Kind::Receipt(ReceiptKind::NonAccettazione),
                s.raw,
                d,
                Some(&sender),
            );
            return vec![Delivery {
                mailbox: sender,
                raw,
                kind: Kind::Receipt(ReceiptKind::NonAccettazione),
                delay: Duration::ZERO,
            }];
        }

        let mut out = Vec::new();
        let accettazione = Kind::Receipt(ReceiptKind::Accettazione);
        out.push(Delivery {
            mailbox: sender.clone(),
            raw: self.build(accettazione, s.raw, base.clone(), Some(&sender)),
            kind: accettazione,
            delay: Duration::ZERO,
        });

        let variant = header_values(s.raw, "X-TipoRicevuta")
            .first()
            .map(|v| TipoRicevuta::from_value(v))
            .unwrap_or(self.receipt_type);
        let mut with_variant = base.clone();
        with_variant.ricevuta = Some(variant.as_str().to_owned());

        let hosted: Vec<&String> = s.recipients.iter().filter(|r| self.hosts(r)).collect();
        let existing: Vec<&&String> = hosted.iter().filter(|r| self.mailbox_exists(r)).collect();
        if !existing.is_empty() {
            let envelope = self.build(Kind::Envelope, s.raw, with_variant.clone(), None);
            for r in &existing {
                out.push(Delivery {
                    mailbox: r.to_string(),
                    raw: envelope.clone(),
                    kind: Kind::Envelope,
                    delay: Duration::ZERO,
                });
            }
        }
        for r in hosted {
            let (kind, d) = if self.mailbox_exists(r) {
                let mut d = with_variant.clone();
                d.consegna = vec![r.clone()];
                (Kind::Receipt(ReceiptKind::AvvenutaConsegna), d)
            } else {
                let mut d = base.clone();
                d.consegna = vec![r.clone()];
                d.errore = if self.quirks.altro_for_unknown_mailbox {
                    "altro"
                } else {
                    "no-dest"
                }
                .to_owned();
                d.errore_esteso = Some(format!("5.1.1 - {} - indirizzo non valido", self.gestore));
                (Kind::Receipt(ReceiptKind::ErroreConsegna), d)
            };
            out.push(Delivery {
                mailbox: sender.clone(),
                raw: self.build(kind, s.raw, d, Some(&sender)),
                kind,
                delay: self.quirks.receipt_delay,
            });
        }
        if self.quirks.preavviso_for_external {
            let preavviso = Kind::Receipt(ReceiptKind::PreavvisoErroreConsegna);
            for r in s.recipients.iter().filter(|r| !self.hosts(r)) {
                let mut d = base.clone();
                d.data = Some(now + PREAVVISO_AFTER);
                d.consegna = vec![r.clone()];
                d.errore = "no-dest".to_owned();
                d.errore_esteso = Some(format!(
                    "5.4.1 - {} - nessuna ricevuta di consegna entro 12 ore",
                    self.gestore
                ));
                out.push(Delivery {
                    mailbox: sender.clone(),
                    raw: self.build(preavviso, s.raw, d, Some(&sender)),
                    kind: preavviso,
                    delay: self.quirks.receipt_delay,
                });
            }
        }
        out
    }

    /// Ordinary mail from outside to a hosted mailbox: a busta di anomalia around the message
    /// as received.
    pub fn receive_external(&mut self, to: &str, raw: &[u8]) -> Delivery {
        let now = self.now();
        let mut d = daticert_from_original(raw);
        d.gestore_emittente = Some(self.gestore.clone());
        d.data = Some(now);
        d.identificativo = Some(self.next_identificativo(now));
        d.ricevuta = None;
        if d.destinatari.is_empty() {
            d.destinatari.push(pec::Destinatario {
                address: to.to_owned(),
                tipo: "certificato".to_owned(),
            });
        }
        Delivery {
            mailbox: to.to_owned(),
            raw: self.build(Kind::Anomaly, raw, d, None),
            kind: Kind::Anomaly,
            delay: Duration::ZERO,
        }
    }

    /// The access-point checks (pec-format §11); `Err` carries the reason for errore-esteso.
    fn check(&self, s: &Submission, d: &pec::Daticert) -> Result<(), String> {
        let user = s.authenticated_user.trim();
        if !s.mail_from.trim().eq_ignore_ascii_case(user) {
            return Err("mittente SMTP diverso dall'utente autenticato".to_owned());
        }
        match &d.mittente {
            Some(from) if from.trim().eq_ignore_ascii_case(user) => {}
            _ => return Err("mittente (From) diverso dall'utente autenticato".to_owned()),
        }
        if !header_values(s.raw, "Bcc").is_empty() {
            return Err("destinatari in copia nascosta (Bcc) non ammessi".to_owned());
        }
        if s.recipients.is_empty() {
            return Err("nessun destinatario".to_owned());
        }
        for r in s.recipients {
            if !d
                .destinatari
                .iter()
                .any(|x| x.address.trim().eq_ignore_ascii_case(r.trim()))
            {
                return Err(format!("destinatario {r} non presente in To/Cc"));
            }
        }
        let total = s.raw.len().saturating_mul(s.recipients.len());
        if total > self.size_limit {
            return Err(format!(
                "dimensione del messaggio per numero di destinatari ({total} byte) oltre il limite di {} byte",
                self.size_limit
            ));
        }
        Ok(())
    }

    fn build(&self, kind: Kind, original: &[u8], d: pec::Daticert, to: Option<&str>) -> Vec<u8> {
        let provider = Provider::new(&self.gestore, self.domain());
        let mut b = PecBuilder::new(kind, provider, d)
            .original(original)
            .lowercase_headers(self.quirks.lowercase_headers)
            .signature(SignatureMode::signed_by(SigningIdentity::sandbox()));
        if let Some(to) = to {
            b = b.to(to);
        }
        b.build()
            .expect("a provider message with data and original always builds")
    }

    fn domain(&self) -> &str {
        self.domains
            .first()
            .map_or("pec.sandbox.test", String::as_str)
    }

    fn now(&self) -> DateTime<FixedOffset> {
        self.clock.unwrap_or_else(|| Local::now().into())
    }

    fn next_identificativo(&mut self, now: DateTime<FixedOffset>) -> String {
        self.counter += 1;
        format!(
            "opec{}.{}@{}",
            self.counter,
            now.format("%Y%m%d%H%M%S"),
            self.domain()
        )
    }
}

fn domain_of(address: &str) -> Option<String> {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

/// The unfolded values of the top-level header `name` (case-insensitive).
fn header_values(raw: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let mut values = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        values.extend(current.take());
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            current = Some(v.trim().to_owned());
        }
    }
    values.extend(current);
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use pec::build::{Address, MailBuilder};
    use pec::{PecMessage, Verdict};

    const GESTORE: &str = "Gestore Sandbox S.p.A.";
    const SENDER: &str = "ufficio@pec.sandbox.test";
    const ALICE: &str = "alice@pec.sandbox.test";
    const BOB: &str = "bob@pec.sandbox.test";

    fn provider() -> PecProvider {
        PecProvider::new(GESTORE, &["pec.sandbox.test", "pec.altro.test"]).with_clock(
            DateTime::parse_from_rfc3339("2026-11-27T10:15:00+01:00").expect("timestamp"),
        )
    }

    fn message(from: &str, to: &[&str]) -> MailBuilder {
        let mut m = MailBuilder::new()
            .from(Address::named("Ufficio Protocollo", from))
            .subject("Convocazione")
            .date(DateTime::parse_from_rfc3339("2026-11-27T10:14:00+01:00").expect("date"))
            .message_id("client-1@connector.test")
            .text("Si comunica la convocazione.\n")
            .attachment(
                "convocazione.pdf",
                "application/pdf",
                b"%PDF-1.4 convocazione",
            );
        for t in to {
            m = m.to(*t);
        }
        m
    }

    fn submit(p: &mut PecProvider, user: &str, to: &[&str], raw: &[u8]) -> Vec<Delivery> {
        let recipients: Vec<String> = to.iter().map(|s| s.to_string()).collect();
        p.submit(&Submission {
            authenticated_user: user,
            mail_from: user,
            recipients: &recipients,
            raw,
        })
    }

    fn parse(d: &Delivery) -> PecMessage {
        let m = PecMessage::parse(&d.raw).expect("provider message parses");
        assert_eq!(m.kind, d.kind, "classified as the provider meant it");
        assert_eq!(m.signature.verdict, Verdict::Untrusted, "{:?}", m.signature);
        m
    }

    #[test]
    fn two_hosted_recipients_get_envelopes_and_sender_gets_receipts() {
        let mut p = provider();
        let raw = message(SENDER, &[ALICE, BOB]).build();
        let out = submit(&mut p, SENDER, &[ALICE, BOB], &raw);
        let kinds: Vec<Kind> = out.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Receipt(ReceiptKind::Accettazione),
                Kind::Envelope,
                Kind::Envelope,
                Kind::Receipt(ReceiptKind::AvvenutaConsegna),
                Kind::Receipt(ReceiptKind::AvvenutaConsegna),
            ]
        );

        let acc = parse(&out[0]);
        assert_eq!(out[0].mailbox, SENDER);
        let acc_d = acc.daticert.as_ref().expect("daticert");
        let id = acc_d.identificativo.clone().expect("identificativo");
        assert!(
            id.starts_with("opec1.20261127101500@pec.sandbox.test"),
            "{id}"
        );
        assert_eq!(acc_d.msgid.as_deref(), Some("<client-1@connector.test>"));
        assert_eq!(acc_d.mittente.as_deref(), Some(SENDER));
        assert_eq!(acc_d.gestore_emittente.as_deref(), Some(GESTORE));
        let dest: Vec<&str> = acc_d
            .destinatari
            .iter()
            .map(|x| x.address.as_str())
            .collect();
        assert_eq!(dest, vec![ALICE, BOB]);
        assert_ne!(acc.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            acc.riferimento_message_id.as_deref(),
            Some("<client-1@connector.test>")
        );

        for (delivery, rcpt) in out[1..3].iter().zip([ALICE, BOB]) {
            assert_eq!(delivery.mailbox, rcpt);
            let env = parse(delivery);
            let d = env.daticert.as_ref().expect("daticert");
            assert_eq!(d.identificativo.as_deref(), Some(id.as_str()));
            assert_eq!(d.msgid.as_deref(), Some("<client-1@connector.test>"));
            assert_eq!(d.mittente.as_deref(), Some(SENDER));
            assert_eq!(d.ricevuta.as_deref(), Some("completa"));
            // Message-ID rewritten to the identificativo, on the envelope and in postacert.eml.
            assert_eq!(env.message_id.as_deref(), Some(id.as_str()));
            let original = env.original.as_ref().expect("postacert.eml");
            assert_eq!(original.message_id.as_deref(), Some(id.as_str()));
            assert_eq!(original.subject.as_deref(), Some("Convocazione"));
            assert_eq!(
                original.text.as_deref().map(str::trim_end),
                Some("Si comunica la convocazione.")
            );
            assert_eq!(original.attachments.len(), 1);
            assert_eq!(env.sender().as_deref(), Some(SENDER));
        }

        for (delivery, rcpt) in out[3..].iter().zip([ALICE, BOB]) {
            assert_eq!(delivery.mailbox, SENDER);
            let c = parse(delivery);
            let d = c.daticert.as_ref().expect("daticert");
            assert_eq!(d.identificativo.as_deref(), Some(id.as_str()));
            assert_eq!(d.msgid.as_deref(), Some("<client-1@connector.test>"));
            assert_eq!(d.mittente.as_deref(), Some(SENDER));
            assert_eq!(d.consegna, vec![rcpt.to_owned()]);
            assert_eq!(d.errore, "nessuno");
            assert!(c.has_postacert, "completa carries the original");
        }
        // Every provider message has its own Message-ID.
        let ids: HashSet<String> = out
            .iter()
            .filter(|d| d.kind != Kind::Envelope)
            .map(|d| parse(d).message_id.expect("message id"))
            .collect();
        assert_eq!(ids.len(), 3);

        // The next submission gets a new identificativo.
        let again = submit(&mut p, SENDER, &[ALICE], &raw);
        let next = parse(&again[0]).daticert.expect("daticert").identificativo;
        assert_ne!(next.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn sintetica_requested_by_the_sender_has_no_postacert() {
        let mut p = provider();
        let raw = message(SENDER, &[ALICE])
            .header("X-TipoRicevuta", "sintetica")
            .build();
        let out = submit(&mut p, SENDER, &[ALICE], &raw);
        let consegna = parse(out.last().expect("consegna"));
        assert_eq!(consegna.kind, Kind::Receipt(ReceiptKind::AvvenutaConsegna));
        assert_eq!(consegna.tipo_ricevuta, Some(TipoRicevuta::Sintetica));
        assert!(!consegna.has_postacert);
    }

    #[test]
    fn unknown_hosted_recipient_gets_mancata_consegna() {
        let mut p = provider();
        let unknown = "unknown.user@pec.altro.test";
        let raw = message(SENDER, &[ALICE, unknown]).build();
        let out = submit(&mut p, SENDER, &[ALICE, unknown], &raw);
        let kinds: Vec<(Kind, &str)> = out.iter().map(|d| (d.kind, d.mailbox.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Receipt(ReceiptKind::Accettazione), SENDER),
                (Kind::Envelope, ALICE),
                (Kind::Receipt(ReceiptKind::AvvenutaConsegna), SENDER),
                (Kind::Receipt(ReceiptKind::ErroreConsegna), SENDER),
            ]
        );
        let errore = parse(&out[3]);
        let facts = errore.receipt().expect("receipt facts");
        assert_eq!(facts.consegna, [unknown.to_owned()]);
        assert_eq!(facts.errore, Some("no-dest"));
        assert!(
            facts
                .errore_esteso
                .is_some_and(|e| e.starts_with("5.1.1 - Gestore Sandbox S.p.A.")),
            "{facts:?}"
        );
        assert_eq!(facts.msgid, Some("client-1@connector.test"));

        // An explicit mailbox list, and Aruba's errore="altro".
        let mut p = provider()
            .with_mailboxes(&[SENDER, ALICE])
            .with_quirks(Quirks {
                altro_for_unknown_mailbox: true,
                ..Quirks::default()
            });
        let out = submit(&mut p, SENDER, &[BOB], &message(SENDER, &[BOB]).build());
        let kinds: Vec<Kind> = out.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Receipt(ReceiptKind::Accettazione),
                Kind::Receipt(ReceiptKind::ErroreConsegna)
            ]
        );
        assert_eq!(
            parse(&out[1]).receipt().expect("facts").errore,
            Some("altro")
        );
    }

    fn assert_refused(out: &[Delivery], user: &str, why: &str) {
        assert_eq!(out.len(), 1, "only the avviso, nothing delivered: {why}");
        assert_eq!(out[0].mailbox, user);
        let m = parse(&out[0]);
        assert_eq!(m.kind, Kind::Receipt(ReceiptKind::NonAccettazione));
        let d = m.daticert.expect("daticert");
        assert_eq!(d.errore, "altro");
        assert!(d.identificativo.is_some());
        assert!(
            d.errore_esteso.as_deref().is_some_and(|e| e.contains(why)),
            "{:?} should mention {why}",
            d.errore_esteso
        );
    }

    #[test]
    fn from_other_than_the_authenticated_user_is_not_accepted() {
        let mut p = provider();
        let raw = message("someone.else@pec.sandbox.test", &[ALICE]).build();
        let out = submit(&mut p, SENDER, &[ALICE], &raw);
        assert_refused(&out, SENDER, "From");

        let recipients = vec![ALICE.to_owned()];
        let raw = message(SENDER, &[ALICE]).build();
        let out = p.submit(&Submission {
            authenticated_user: SENDER,
            mail_from: "other@pec.sandbox.test",
            recipients: &recipients,
            raw: &raw,
        });
        assert_refused(&out, SENDER, "SMTP");
    }

    #[test]
    fn bcc_is_not_accepted() {
        let mut p = provider();
        let raw = message(SENDER, &[ALICE]).header("Bcc", BOB).build();
        let out = submit(&mut p, SENDER, &[ALICE, BOB], &raw);
        assert_refused(&out, SENDER, "Bcc");
    }

    #[test]
    fn recipients_outside_to_and_cc_are_not_accepted() {
        let mut p = provider();
        let raw = message(SENDER, &[ALICE]).build();
        let out = submit(&mut p, SENDER, &[ALICE, BOB], &raw);
        assert_refused(&out, SENDER, "To/Cc");
    }

    #[test]
    fn size_times_recipients_over_the_limit_is_not_accepted() {
        let raw = message(SENDER, &[ALICE, BOB]).build();
        let mut p = provider().with_size_limit(raw.len() * 2 - 1);
        let out = submit(&mut p, SENDER, &[ALICE, BOB], &raw);
        assert_refused(&out, SENDER, "limite");
        let out = submit(&mut p, SENDER, &[ALICE], &message(SENDER, &[ALICE]).build());
        assert_eq!(out[0].kind, Kind::Receipt(ReceiptKind::Accettazione));
    }

    #[test]
    fn external_ordinary_mail_becomes_an_anomaly() {
        let mut p = provider();
        let raw = MailBuilder::new()
            .from("stampa@esempio.test")
            .to(ALICE)
            .subject("Comunicato")
            .message_id("plain-1@esempio.test")
            .text("Testo del comunicato.\n")
            .build();
        let d = p.receive_external(ALICE, &raw);
        assert_eq!(d.mailbox, ALICE);
        let m = parse(&d);
        assert_eq!(m.kind, Kind::Anomaly);
        let dc = m.daticert.as_ref().expect("daticert");
        assert_eq!(dc.mittente.as_deref(), Some("stampa@esempio.test"));
        assert!(
            dc.identificativo
                .as_deref()
                .is_some_and(|i| i.starts_with("opec1."))
        );
        let original = m.original.expect("postacert.eml");
        assert_eq!(original.subject.as_deref(), Some("Comunicato"));
        assert_eq!(original.message_id.as_deref(), Some("plain-1@esempio.test"));
    }

    #[test]
    fn quirk_lowercase_header_names_still_classify() {
        let mut p = provider().with_quirks(Quirks {
            lowercase_headers: true,
            ..Quirks::default()
        });
        let raw = message(SENDER, &[ALICE]).build();
        let out = submit(&mut p, SENDER, &[ALICE], &raw);
        assert_eq!(out.len(), 3);
        for d in &out {
            let head = String::from_utf8_lossy(&d.raw);
            let head = head.split("\r\n\r\n").next().expect("header block");
            let names: Vec<&str> = head
                .lines()
                .filter(|l| !l.starts_with([' ', '\t']))
                .filter_map(|l| l.split_once(':').map(|(n, _)| n))
                .collect();
            assert!(
                names.contains(&"x-trasporto") || names.contains(&"x-ricevuta"),
                "{names:?}"
            );
            assert!(
                names.iter().all(|n| *n == n.to_ascii_lowercase()),
                "{names:?}"
            );
            parse(d);
        }
    }

    #[test]
    fn quirk_preavviso_for_a_recipient_outside_arrives_dated_12_hours_later() {
        let mut p = provider().with_quirks(Quirks {
            preavviso_for_external: true,
            receipt_delay: Duration::from_millis(300),
            ..Quirks::default()
        });
        let outside = "ufficio@pec.altrogestore.test";
        let raw = message(SENDER, &[ALICE, outside]).build();
        let out = submit(&mut p, SENDER, &[ALICE, outside], &raw);
        let kinds: Vec<(Kind, Duration)> = out.iter().map(|d| (d.kind, d.delay)).collect();
        let late = Duration::from_millis(300);
        assert_eq!(
            kinds,
            vec![
                (Kind::Receipt(ReceiptKind::Accettazione), Duration::ZERO),
                (Kind::Envelope, Duration::ZERO),
                (Kind::Receipt(ReceiptKind::AvvenutaConsegna), late),
                (Kind::Receipt(ReceiptKind::PreavvisoErroreConsegna), late),
            ]
        );
        let accettazione = parse(&out[0]).daticert.expect("daticert");
        let m = parse(&out[3]);
        let facts = m.receipt().expect("facts");
        assert_eq!(facts.consegna, [outside.to_owned()]);
        assert!(facts.errore_esteso.is_some_and(|e| e.starts_with("5.4.1")));
        let d = m.daticert.as_ref().expect("daticert");
        assert_eq!(d.identificativo, accettazione.identificativo);
        assert_eq!(
            d.data.expect("data") - accettazione.data.expect("data"),
            PREAVVISO_AFTER
        );
    }

    #[test]
    fn header_values_unfolds_and_ignores_the_body() {
        let raw = b"From: a@b\r\nbcc: x@y,\r\n z@w\r\n\r\nBcc: not a header\r\n";
        assert_eq!(header_values(raw, "Bcc"), vec!["x@y, z@w".to_owned()]);
        assert!(header_values(raw, "To").is_empty());
    }
}
