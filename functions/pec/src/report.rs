//! The flat summary of a message printed by `pec-connector inspect`, one JSON object per file.
//! Key names are fixed (admins and scripts read them); see `Report`.

use serde::{Deserialize, Serialize};

/// What `pec-connector inspect` prints for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub file: String,
    /// `envelope`, `anomaly`, a receipt kind (`accettazione`, ...), or `non-pec`.
    pub kind: String,
    /// The `X-Ricevuta` header value, as written.
    pub ricevuta: Option<String>,
    /// `completa`, `breve` or `sintetica` (daticert `ricevuta/@tipo`, else `X-TipoRicevuta`).
    pub ricevuta_tipo: Option<String>,
    /// The subject shown to humans (daticert `oggetto`, else the original's, else the top-level
    /// subject with one provider prefix stripped).
    pub subject: String,
    /// The top-level Subject header, decoded.
    pub raw_subject: String,
    /// The real sender (daticert `mittente`, else the original's From, else the top-level From).
    pub sender: Option<String>,
    /// daticert `destinatari`, else the original's To + Cc, else the top-level To + Cc.
    pub recipients: Vec<String>,
    pub riferimento_message_id: Option<String>,
    pub identificativo: Option<String>,
    pub msgid: Option<String>,
    pub errore: Option<String>,
    pub errore_esteso: Option<String>,
    pub consegna: Vec<String>,
    pub has_daticert: bool,
    pub has_postacert: bool,
    /// File names of the original message's attachments.
    pub attachments: Vec<String>,
    /// `valid`, `invalid`, `untrusted` or `missing`.
    pub signature: String,
    /// The provider that issued the message (daticert `gestore-emittente`).
    pub provider: Option<String>,
    /// The legal time of the event (daticert `data`), RFC 3339 with its zone.
    pub data: Option<String>,
    pub signer: Option<String>,
    pub signing_time: Option<String>,
    /// Why the signature is not valid, when it is not.
    pub signature_reason: Option<String>,
    /// Things a human should know: header/daticert disagreement, unreadable daticert, ...
    pub warnings: Vec<String>,
}

impl Report {
    /// Summarises a parsed message; `file` is the name shown in the `file` key.
    pub fn from_message(msg: &crate::PecMessage, file: &str) -> Report {
        let d = msg.daticert.as_ref();
        Report {
            file: file.to_owned(),
            kind: msg.kind.as_str().to_owned(),
            ricevuta: msg.x_ricevuta.clone(),
            ricevuta_tipo: msg.tipo_ricevuta.map(|t| t.as_str().to_owned()),
            subject: msg.subject(),
            raw_subject: msg.raw_subject.clone(),
            sender: msg.sender(),
            recipients: msg.recipients(),
            riferimento_message_id: msg.riferimento_message_id.clone(),
            identificativo: msg.identificativo().map(str::to_owned),
            msgid: d.and_then(|d| d.msgid.clone()),
            errore: d.map(|d| d.errore.clone()),
            errore_esteso: d.and_then(|d| d.errore_esteso.clone()),
            consegna: d.map(|d| d.consegna.clone()).unwrap_or_default(),
            has_daticert: msg.has_daticert,
            has_postacert: msg.has_postacert,
            attachments: msg
                .original
                .as_ref()
                .map(|o| {
                    o.attachments
                        .iter()
                        .filter(|a| !a.generated_name)
                        .map(|a| a.filename.clone())
                        .collect()
                })
                .unwrap_or_default(),
            signature: msg.signature.verdict.as_str().to_owned(),
            provider: d.and_then(|d| d.gestore_emittente.clone()),
            data: d.and_then(|d| d.data).map(|t| t.to_rfc3339()),
            signer: msg.signature.signer.clone(),
            signing_time: msg.signature.signing_time.map(|t| t.to_rfc3339()),
            signature_reason: msg.signature.reason.clone(),
            warnings: msg
                .warnings
                .iter()
                .chain(msg.original.iter().flat_map(|o| o.warnings.iter()))
                .cloned()
                .collect(),
        }
    }
}
