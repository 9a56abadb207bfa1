//! The Zendesk tags the connector puts on tickets and the triggers it provisions look for: the
//! names users of the established product already know (views, triggers and reports are built on
//! them), so they never change.

use pec::{Kind, ReceiptKind, Verdict};

/// Tag on every ticket the connector makes.
pub const TAG: &str = "pec_connector";

/// Tag of the connector's alert tickets.
pub const ALERT_TAG: &str = "pec_connector_avviso";

/// Tag of a message that could not be read at all.
pub const UNREADABLE_TAG: &str = "pec_non_leggibile";

/// Tag of a message that could not be imported and was parked.
pub const UNIMPORTABLE_TAG: &str = "pec_non_importabile";

/// Tag of a message over the size limit, imported with its headers only.
pub const TOO_LARGE_TAG: &str = "pec_troppo_grande";

/// `pec_connector_<address without @>`: the tag of one account's tickets.
pub fn account_tag(address: &str) -> String {
    format!("{TAG}_{}", address.replace('@', ""))
}

/// `pec_connector_reply_<address without @>`: the tag that fires the account's "Reply by PEC
/// Connector [address]" trigger (the template send).
pub fn reply_tag(address: &str) -> String {
    format!("{TAG}_reply_{}", address.replace('@', ""))
}

/// The tag for a signature verdict.
pub fn signature_tag(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "pec_firma_valida",
        Verdict::Invalid => "pec_firma_non_valida",
        Verdict::Untrusted => "pec_firma_non_attendibile",
        Verdict::Missing => "pec_firma_assente",
    }
}

/// The tag for a message kind (new tickets) or a receipt (delivery state on a ticket).
pub fn kind_tag(kind: Kind) -> &'static str {
    match kind {
        Kind::Envelope => "pec_messaggio",
        Kind::Anomaly => "pec_anomalia",
        Kind::NonPec => "pec_posta_ordinaria",
        Kind::Receipt(r) => match r {
            ReceiptKind::Accettazione => "pec_accettata",
            ReceiptKind::NonAccettazione => "pec_non_accettata",
            ReceiptKind::PresaInCarico => "pec_presa_in_carico",
            ReceiptKind::AvvenutaConsegna => "pec_consegnata",
            ReceiptKind::ErroreConsegna => "pec_mancata_consegna",
            ReceiptKind::PreavvisoErroreConsegna => "pec_preavviso_mancata_consegna",
            ReceiptKind::RilevazioneVirus => "pec_virus",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_and_reply_tags_drop_the_at_sign() {
        assert_eq!(
            account_tag("uffici@pec.comune.it"),
            "pec_connector_ufficipec.comune.it"
        );
        assert_eq!(
            reply_tag("protocollo@pec.comune.it"),
            "pec_connector_reply_protocollopec.comune.it"
        );
    }
}
