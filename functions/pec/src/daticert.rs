//! `daticert.xml`: the provider's certification data carried by every PEC envelope and receipt
//! (RT §7.3.3). Parsed leniently with a real XML parser: stray text between elements, unknown
//! elements and missing optional elements are accepted; only a document without a `postacert`
//! root is an error.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde::Serialize;

/// Parsed `daticert.xml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Daticert {
    /// `postacert/@tipo`: `posta-certificata`, `accettazione`, `avvenuta-consegna`, ...
    pub tipo: String,
    /// `postacert/@errore`: `nessuno` (default), `no-dest`, `no-dominio`, `virus`, `altro`.
    pub errore: String,
    /// `intestazione/mittente`: the original sender (authoritative).
    pub mittente: Option<String>,
    /// `intestazione/destinatari`, one per original recipient, with its `tipo`.
    pub destinatari: Vec<Destinatario>,
    /// `intestazione/risposte`: the reply address.
    pub risposte: Option<String>,
    /// `intestazione/oggetto`: the original subject.
    pub oggetto: Option<String>,
    /// `dati/gestore-emittente`: the issuing provider's name.
    pub gestore_emittente: Option<String>,
    /// `dati/data` as a timestamp in its own zone (the legal time of the event).
    pub data: Option<DateTime<FixedOffset>>,
    /// `dati/identificativo`: the PEC id of the message this document is about (no angle brackets).
    pub identificativo: Option<String>,
    /// `dati/msgid`: the sender client's original Message-ID, as written (usually with `<>`).
    pub msgid: Option<String>,
    /// `dati/ricevuta/@tipo`: `completa`, `breve` or `sintetica`.
    pub ricevuta: Option<String>,
    /// `dati/consegna`: the recipient a per-recipient receipt is about.
    pub consegna: Vec<String>,
    /// `dati/ricezione`: recipients covered by a presa in carico.
    pub ricezione: Vec<String>,
    /// `dati/errore-esteso`: the provider's error text.
    pub errore_esteso: Option<String>,
}

/// One `destinatari` element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destinatario {
    pub address: String,
    /// `certificato` (a PEC mailbox, the default) or `esterno` (ordinary mail).
    pub tipo: String,
}

/// Why a `daticert.xml` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DaticertError {
    #[error("cannot parse daticert.xml: {0}")]
    Xml(String),
    #[error("cannot parse daticert.xml: no postacert root element")]
    NoRoot,
}

const MAX_TEXT: usize = 64 * 1024;
const MAX_DEPTH: usize = 32;

impl Daticert {
    /// Parses a `daticert.xml` document (already transfer-decoded: plain XML bytes).
    pub fn parse(xml: &[u8]) -> Result<Daticert, DaticertError> {
        let mut reader = Reader::from_reader(xml);
        reader.config_mut().check_end_names = false;
        let mut out = Daticert {
            errore: "nessuno".to_owned(),
            ..Daticert::default()
        };
        let mut seen_root = false;
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut zona: Option<String> = None;
        let mut giorno: Option<String> = None;
        let mut ora: Option<String> = None;
        let mut dest_tipo = String::new();
        let mut buf = Vec::new();
        loop {
            let event = match reader.read_event_into(&mut buf) {
                Ok(event) => event,
                // A truncated or damaged tail keeps what was read before it.
                Err(_) if seen_root => break,
                Err(e) => return Err(DaticertError::Xml(e.to_string())),
            };
            match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let is_empty = matches!(event, Event::Empty(_));
                    let name = local_name(e);
                    match name.as_str() {
                        "postacert" if !seen_root => {
                            seen_root = true;
                            out.tipo = attr(e, "tipo").unwrap_or_default();
                            if let Some(errore) = attr(e, "errore") {
                                out.errore = errore;
                            }
                        }
                        "data" => zona = attr(e, "zona"),
                        "ricevuta" => out.ricevuta = attr(e, "tipo"),
                        "destinatari" => {
                            dest_tipo = attr(e, "tipo").unwrap_or_else(|| "certificato".to_owned())
                        }
                        _ => {}
                    }
                    if !is_empty {
                        if path.len() >= MAX_DEPTH {
                            return Err(DaticertError::Xml("elements nested too deeply".into()));
                        }
                        path.push(name);
                        text.clear();
                    }
                }
                Event::Text(t) => {
                    // Unescapes entity and character references; a bad reference keeps the raw text.
                    let raw = String::from_utf8_lossy(&t).into_owned();
                    let s = quick_xml::escape::unescape(&raw)
                        .map(|c| c.into_owned())
                        .unwrap_or(raw);
                    push_text(&mut text, &s);
                }
                Event::CData(c) => {
                    push_text(&mut text, &String::from_utf8_lossy(&c));
                }
                Event::End(_) => {
                    let Some(name) = path.pop() else { continue };
                    let value = text.trim().to_owned();
                    text.clear();
                    let non_empty = (!value.is_empty()).then(|| value.clone());
                    match name.as_str() {
                        "mittente" => out.mittente = non_empty,
                        "destinatari" if !value.is_empty() => {
                            out.destinatari.push(Destinatario {
                                address: value,
                                tipo: std::mem::take(&mut dest_tipo),
                            });
                        }
                        "risposte" => out.risposte = non_empty,
                        "oggetto" => out.oggetto = Some(value),
                        "gestore-emittente" => out.gestore_emittente = non_empty,
                        "giorno" => giorno = non_empty,
                        "ora" => ora = non_empty,
                        "identificativo" => out.identificativo = non_empty,
                        "msgid" => out.msgid = non_empty,
                        "consegna" if !value.is_empty() => out.consegna.push(value),
                        "ricezione" if !value.is_empty() => out.ricezione.push(value),
                        "errore-esteso" => out.errore_esteso = non_empty,
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        if !seen_root {
            return Err(DaticertError::NoRoot);
        }
        out.data = timestamp(giorno.as_deref(), ora.as_deref(), zona.as_deref());
        Ok(out)
    }
}

fn push_text(text: &mut String, s: &str) {
    if text.len() + s.len() <= MAX_TEXT {
        text.push_str(s);
    }
}

fn local_name(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).to_ascii_lowercase()
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        if a.key
            .local_name()
            .as_ref()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            let raw = String::from_utf8_lossy(&a.value).into_owned();
            let v = quick_xml::escape::unescape(&raw)
                .map(|v| v.into_owned())
                .unwrap_or(raw);
            Some(v.trim().to_owned())
        } else {
            None
        }
    })
}

/// `giorno` dd/mm/yyyy, `ora` hh:mm:ss, `zona` [+|-]hhmm → timestamp with that offset.
fn timestamp(
    giorno: Option<&str>,
    ora: Option<&str>,
    zona: Option<&str>,
) -> Option<DateTime<FixedOffset>> {
    let date = NaiveDate::parse_from_str(giorno?.trim(), "%d/%m/%Y").ok()?;
    let time = NaiveTime::parse_from_str(ora?.trim(), "%H:%M:%S").ok()?;
    let offset = parse_zone(zona.unwrap_or("+0000"))?;
    offset.from_local_datetime(&date.and_time(time)).single()
}

fn parse_zone(z: &str) -> Option<FixedOffset> {
    let z = z.trim();
    let (sign, digits) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => (1, z),
    };
    let digits: String = digits.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() != 4 {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// Normalises a message id for comparison: trims whitespace and one pair of angle brackets.
/// The local part stays case-sensitive.
pub fn normalize_msgid(id: &str) -> &str {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    id.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARUBA: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="avvenuta-consegna" errore="nessuno">
    <intestazione>
        <mittente>l.battistini@pec.it</mittente>
        <destinatari tipo="certificato">l.battistini@pec.it</destinatari>
        <risposte>l.battistini@pec.it</risposte>
        <oggetto>IT03339130126_00009.xml</oggetto>
    </intestazione>
    <dati>
        <gestore-emittente>ARUBA PEC S.p.A.</gestore-emittente>
        <data zona="+0100">
            <giorno>13/11/2018</giorno>
            <ora>16:39:27</ora>
        </data>
        <identificativo>opec288.20181113163926.01838.310.1.63@pec.aruba.it</identificativo>
        <msgid>&lt;1542123565.9215@elbati-Vostro-3550&gt;</msgid>
        <ricevuta tipo="completa" />
        <consegna>l.battistini@pec.it</consegna>
    </dati>
</postacert>"#;

    #[test]
    fn parses_every_field_of_a_real_aruba_daticert() {
        let d = Daticert::parse(ARUBA.as_bytes()).unwrap();
        assert_eq!(d.tipo, "avvenuta-consegna");
        assert_eq!(d.errore, "nessuno");
        assert_eq!(d.mittente.as_deref(), Some("l.battistini@pec.it"));
        assert_eq!(
            d.destinatari,
            vec![Destinatario {
                address: "l.battistini@pec.it".into(),
                tipo: "certificato".into()
            }]
        );
        assert_eq!(d.oggetto.as_deref(), Some("IT03339130126_00009.xml"));
        assert_eq!(d.gestore_emittente.as_deref(), Some("ARUBA PEC S.p.A."));
        assert_eq!(d.data.unwrap().to_rfc3339(), "2018-11-13T16:39:27+01:00");
        assert_eq!(
            d.msgid.as_deref(),
            Some("<1542123565.9215@elbati-Vostro-3550>")
        );
        assert_eq!(d.ricevuta.as_deref(), Some("completa"));
        assert_eq!(d.consegna, vec!["l.battistini@pec.it"]);
        assert_eq!(d.errore_esteso, None);
    }

    #[test]
    fn accepts_stray_text_and_missing_optional_elements() {
        let xml = r#"<postacert tipo="errore-consegna" errore="no-dest">
    <intestazione>
        <mittente>sender@fakepec.it</mittente>
        <destinatari>rec@pec.it</destinatari>
        <risposte>sender@fakepec.it</risposte>a
    </intestazione>
    <dati><data zona="+0100"><giorno>15/11/2024</giorno><ora>18:21:03</ora></data>
        <consegna>rec@fakepec.it</consegna>
        <errore-esteso>5.1.1 - FAKE Pec S.p.A. - indirizzo non valido</errore-esteso>
    </dati>
</postacert>"#;
        let d = Daticert::parse(xml.as_bytes()).unwrap();
        assert_eq!(d.errore, "no-dest");
        assert_eq!(d.destinatari[0].tipo, "certificato");
        assert_eq!(d.oggetto, None);
        assert_eq!(d.msgid, None);
        assert_eq!(
            d.errore_esteso.as_deref(),
            Some("5.1.1 - FAKE Pec S.p.A. - indirizzo non valido")
        );
        assert_eq!(d.data.unwrap().to_rfc3339(), "2024-11-15T18:21:03+01:00");
    }

    #[test]
    fn a_document_without_postacert_is_an_error() {
        assert_eq!(Daticert::parse(b"<foo/>"), Err(DaticertError::NoRoot));
        assert!(Daticert::parse(b"").is_err());
        assert!(Daticert::parse(b"<postacert tipo='x'><a></b></postacert").is_ok());
    }

    #[test]
    fn normalizes_message_ids() {
        assert_eq!(normalize_msgid(" <abc@x> "), "abc@x");
        assert_eq!(normalize_msgid("abc@x"), "abc@x");
    }
}
