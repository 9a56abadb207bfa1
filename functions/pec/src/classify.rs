//! What a message is: told apart only by header fields (`X-Trasporto`, `X-Ricevuta`), confirmed
//! by the signed `daticert.xml`. Never by subject, never by `X-Riferimento-Message-ID` alone.

use serde::Serialize;

/// The kind of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Kind {
    /// Busta di trasporto: a certified message from a user, inside `postacert.eml`.
    Envelope,
    /// Busta di anomalia: ordinary mail (or mail with a broken signature) that reached the box.
    Anomaly,
    /// A receipt or notice about a message sent from this box.
    Receipt(ReceiptKind),
    /// Not PEC: ordinary mail, bounces, anything without PEC headers.
    NonPec,
}

/// The receipts and notices of `X-Ricevuta` (same vocabulary as `daticert.xml` `@tipo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ReceiptKind {
    /// Ricevuta di accettazione: the sender's provider accepted the message (proof of sending).
    Accettazione,
    /// Avviso di non accettazione: refused (formal error or virus); nothing was sent.
    NonAccettazione,
    /// Ricevuta di presa in carico: provider-to-provider hand-over.
    PresaInCarico,
    /// Ricevuta di avvenuta consegna: delivered to the recipient's mailbox (proof of delivery).
    AvvenutaConsegna,
    /// Avviso di mancata consegna: delivery to one recipient failed.
    ErroreConsegna,
    /// Preavviso di mancata consegna: no delivery confirmed within 12 hours.
    PreavvisoErroreConsegna,
    /// Avviso di rilevazione virus: provider-to-provider virus notice.
    RilevazioneVirus,
}

impl ReceiptKind {
    pub const ALL: [ReceiptKind; 7] = [
        ReceiptKind::Accettazione,
        ReceiptKind::NonAccettazione,
        ReceiptKind::PresaInCarico,
        ReceiptKind::AvvenutaConsegna,
        ReceiptKind::ErroreConsegna,
        ReceiptKind::PreavvisoErroreConsegna,
        ReceiptKind::RilevazioneVirus,
    ];

    /// The `X-Ricevuta` / daticert `tipo` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Accettazione => "accettazione",
            ReceiptKind::NonAccettazione => "non-accettazione",
            ReceiptKind::PresaInCarico => "presa-in-carico",
            ReceiptKind::AvvenutaConsegna => "avvenuta-consegna",
            ReceiptKind::ErroreConsegna => "errore-consegna",
            ReceiptKind::PreavvisoErroreConsegna => "preavviso-errore-consegna",
            ReceiptKind::RilevazioneVirus => "rilevazione-virus",
        }
    }

    pub fn from_value(value: &str) -> Option<ReceiptKind> {
        let v = value.trim();
        ReceiptKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(v))
    }
}

impl Kind {
    /// The name used by `pec-connector inspect` and in tags: `envelope`, `anomaly`, the receipt
    /// kind, or `non-pec`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Envelope => "envelope",
            Kind::Anomaly => "anomaly",
            Kind::Receipt(r) => r.as_str(),
            Kind::NonPec => "non-pec",
        }
    }

    /// Reads a kind from the PEC headers (`X-Trasporto` wins over `X-Ricevuta`).
    /// `X-Ricevuta: posta-certificata`, which some providers put on envelopes, is an envelope.
    pub fn from_headers(x_trasporto: Option<&str>, x_ricevuta: Option<&str>) -> Option<Kind> {
        if let Some(t) = x_trasporto {
            let t = t.trim();
            if t.eq_ignore_ascii_case("posta-certificata") {
                return Some(Kind::Envelope);
            }
            if t.eq_ignore_ascii_case("errore") {
                return Some(Kind::Anomaly);
            }
        }
        let r = x_ricevuta?;
        if r.trim().eq_ignore_ascii_case("posta-certificata") {
            return Some(Kind::Envelope);
        }
        ReceiptKind::from_value(r).map(Kind::Receipt)
    }

    /// Reads a kind from daticert `@tipo`. `posta-certificata` is an envelope; an anomaly
    /// envelope's daticert also says `posta-certificata`, so the caller keeps `Anomaly`.
    pub fn from_daticert_tipo(tipo: &str) -> Option<Kind> {
        if tipo.trim().eq_ignore_ascii_case("posta-certificata") {
            return Some(Kind::Envelope);
        }
        ReceiptKind::from_value(tipo).map(Kind::Receipt)
    }

    pub fn is_pec(self) -> bool {
        self != Kind::NonPec
    }
}

/// The avvenuta-consegna variant the sender asked for (`X-TipoRicevuta`, daticert `ricevuta/@tipo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TipoRicevuta {
    Completa,
    Breve,
    Sintetica,
}

impl TipoRicevuta {
    pub fn as_str(self) -> &'static str {
        match self {
            TipoRicevuta::Completa => "completa",
            TipoRicevuta::Breve => "breve",
            TipoRicevuta::Sintetica => "sintetica",
        }
    }

    /// Unknown or damaged values (`complet`) mean `completa`, the default.
    pub fn from_value(value: &str) -> TipoRicevuta {
        let v = value.trim();
        if v.eq_ignore_ascii_case("breve") {
            TipoRicevuta::Breve
        } else if v.eq_ignore_ascii_case("sintetica") {
            TipoRicevuta::Sintetica
        } else {
            TipoRicevuta::Completa
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_decide_the_kind() {
        assert_eq!(
            Kind::from_headers(Some("posta-certificata"), None),
            Some(Kind::Envelope)
        );
        assert_eq!(
            Kind::from_headers(Some(" Errore "), None),
            Some(Kind::Anomaly)
        );
        assert_eq!(
            Kind::from_headers(None, Some("Avvenuta-Consegna")),
            Some(Kind::Receipt(ReceiptKind::AvvenutaConsegna))
        );
        assert_eq!(
            Kind::from_headers(None, Some("posta-certificata")),
            Some(Kind::Envelope)
        );
        assert_eq!(Kind::from_headers(None, Some("boh")), None);
        assert_eq!(Kind::from_headers(None, None), None);
        for k in ReceiptKind::ALL {
            assert_eq!(
                Kind::from_headers(None, Some(k.as_str())),
                Some(Kind::Receipt(k))
            );
        }
    }

    #[test]
    fn damaged_tipo_ricevuta_means_completa() {
        assert_eq!(TipoRicevuta::from_value("complet"), TipoRicevuta::Completa);
        assert_eq!(TipoRicevuta::from_value("BREVE"), TipoRicevuta::Breve);
        assert_eq!(
            TipoRicevuta::from_value("sintetica"),
            TipoRicevuta::Sintetica
        );
    }
}
