//! Provider subject prefixes (RT §3; RFC 6109 §3): the provider builds a subject as
//! `PREFIX: original subject`. Prefixes nest when PEC is forwarded, so display code strips at most
//! one. Classification never looks at subjects.

use crate::{Kind, ReceiptKind};

pub const POSTA_CERTIFICATA: &str = "POSTA CERTIFICATA: ";
pub const ANOMALIA: &str = "ANOMALIA MESSAGGIO: ";
pub const ACCETTAZIONE: &str = "ACCETTAZIONE: ";
pub const NON_ACCETTAZIONE: &str = "AVVISO DI NON ACCETTAZIONE: ";
pub const NON_ACCETTAZIONE_VIRUS: &str = "AVVISO DI NON ACCETTAZIONE PER VIRUS: ";
pub const PRESA_IN_CARICO: &str = "PRESA IN CARICO: ";
pub const CONSEGNA: &str = "CONSEGNA: ";
pub const MANCATA_CONSEGNA: &str = "AVVISO DI MANCATA CONSEGNA: ";
pub const MANCATA_CONSEGNA_VIRUS: &str = "AVVISO DI MANCATA CONSEGNA PER VIRUS: ";
pub const MANCATA_CONSEGNA_TEMPO: &str = "AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ";
pub const RILEVAZIONE_VIRUS: &str = "PROBLEMA DI SICUREZZA: ";

/// Every known prefix, longest first so that "... PER VIRUS: " wins over its shorter form.
const ALL: [&str; 11] = [
    MANCATA_CONSEGNA_TEMPO,
    NON_ACCETTAZIONE_VIRUS,
    MANCATA_CONSEGNA_VIRUS,
    NON_ACCETTAZIONE,
    MANCATA_CONSEGNA,
    RILEVAZIONE_VIRUS,
    POSTA_CERTIFICATA,
    ANOMALIA,
    PRESA_IN_CARICO,
    ACCETTAZIONE,
    CONSEGNA,
];

/// The prefix a provider puts on a message of this kind. `virus` selects the "PER VIRUS" forms
/// (`X-VerificaSicurezza: errore`); `tempo` the time-out form of a mancata consegna.
pub fn prefix(kind: Kind, virus: bool, tempo: bool) -> Option<&'static str> {
    Some(match kind {
        Kind::Envelope => POSTA_CERTIFICATA,
        Kind::Anomaly => ANOMALIA,
        Kind::NonPec => return None,
        Kind::Receipt(r) => match r {
            ReceiptKind::Accettazione => ACCETTAZIONE,
            ReceiptKind::NonAccettazione if virus => NON_ACCETTAZIONE_VIRUS,
            ReceiptKind::NonAccettazione => NON_ACCETTAZIONE,
            ReceiptKind::PresaInCarico => PRESA_IN_CARICO,
            ReceiptKind::AvvenutaConsegna => CONSEGNA,
            ReceiptKind::ErroreConsegna if virus => MANCATA_CONSEGNA_VIRUS,
            ReceiptKind::ErroreConsegna if tempo => MANCATA_CONSEGNA_TEMPO,
            ReceiptKind::ErroreConsegna => MANCATA_CONSEGNA,
            ReceiptKind::PreavvisoErroreConsegna => MANCATA_CONSEGNA_TEMPO,
            ReceiptKind::RilevazioneVirus => RILEVAZIONE_VIRUS,
        },
    })
}

/// Strips one known provider prefix (case-insensitive; the space after the colon optional).
pub fn strip_prefix(subject: &str) -> &str {
    let s = subject.trim_start();
    for p in ALL {
        let head = p.trim_end();
        if s.len() >= head.len()
            && s.is_char_boundary(head.len())
            && s[..head.len()].eq_ignore_ascii_case(head)
        {
            return s[head.len()..].trim_start();
        }
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_exactly_one_prefix() {
        assert_eq!(
            strip_prefix("POSTA CERTIFICATA: POSTA CERTIFICATA: X"),
            "POSTA CERTIFICATA: X"
        );
        assert_eq!(
            strip_prefix("AVVISO DI MANCATA CONSEGNA PER VIRUS: fattura"),
            "fattura"
        );
        assert_eq!(strip_prefix("consegna: fattura"), "fattura");
        assert_eq!(strip_prefix("ACCETTAZIONE:fattura"), "fattura");
        assert_eq!(strip_prefix("Re: fattura"), "Re: fattura");
        assert_eq!(strip_prefix("CONSEGNAè"), "CONSEGNAè");
        assert_eq!(strip_prefix("è"), "è");
    }

    #[test]
    fn every_pec_kind_has_a_prefix() {
        for r in ReceiptKind::ALL {
            assert!(prefix(Kind::Receipt(r), false, false).is_some());
        }
        assert_eq!(prefix(Kind::NonPec, false, false), None);
        assert_eq!(
            prefix(Kind::Receipt(ReceiptKind::NonAccettazione), true, false),
            Some(NON_ACCETTAZIONE_VIRUS)
        );
    }
}
