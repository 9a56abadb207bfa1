//! The notes an outbound send leaves on its ticket, in Italian: sent, refused, retried, given
//! up. Everything taken from a ticket or a message is HTML-escaped ([`esc`]).

use std::collections::BTreeSet;

use super::esc;
use crate::domain::{Account, MessageId, PecAddress, ReceiptMode};
use crate::mailer::SendError;
use crate::outbound::AcceptError;
use crate::outbound::compose::{ComposeError, OutboundMessage};
use crate::outbound::webhook::WebhookError;

fn list(to: &[PecAddress]) -> String {
    to.iter()
        .map(|a| esc(a.as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ")
}

/// The note of a PEC that left: to whom, its subject and Message-ID, the files it carried and
/// those it could not (`skipped`, each with why), and where its receipts go.
pub fn sent(
    m: &OutboundMessage,
    skipped: &[String],
    mid: &MessageId,
    receipts: ReceiptMode,
) -> String {
    let mut html = format!(
        "<p><strong>PEC inviata a {}</strong></p><ul><li>Oggetto: {}</li><li>Message-ID: \
         &lt;{}&gt;</li>",
        list(&m.to),
        esc(&m.subject),
        esc(mid.as_str())
    );
    if !m.attachments.is_empty() {
        let names: Vec<String> = m.attachments.iter().map(|f| esc(&f.filename)).collect();
        html.push_str(&format!("<li>Allegati: {}</li>", names.join(", ")));
    }
    if !skipped.is_empty() {
        let names: Vec<String> = skipped.iter().map(|f| esc(f)).collect();
        html.push_str(&format!(
            "<li>Allegati non inviati: {}</li>",
            names.join(", ")
        ));
    }
    html.push_str("</ul>");
    html.push_str(match receipts {
        ReceiptMode::Note | ReceiptMode::Both => {
            "<p>Le ricevute di accettazione e di consegna saranno aggiunte a questo ticket.</p>"
        }
        ReceiptMode::Ticket => {
            "<p>Le ricevute di accettazione e di consegna arriveranno come ticket separati \
             (impostazione della casella).</p>"
        }
    });
    html
}

/// A webhook call refused after it proved to be Zendesk's: `why` is Italian.
pub fn refused(why: &str) -> String {
    format!(
        "<p><strong>PEC non inviata</strong></p><p>Il connettore non ha inviato nulla: {}</p>",
        esc(why)
    )
}

pub fn unusable_body(why: &WebhookError) -> String {
    match why {
        WebhookError::Field { field, .. } => refused(&format!(
            "il campo «{field}» della chiamata del trigger non è utilizzabile ({}). \
             Correggere il ticket (per esempio l'oggetto: non vuoto, su una riga, al massimo \
             255 caratteri) o il trigger, e inviare di nuovo.",
            why
        )),
        _ => refused(
            "la chiamata del trigger non si può leggere. Di solito succede quando un \
             segnaposto (per esempio l'oggetto del ticket) contiene virgolette o caratteri \
             che rompono il corpo JSON del webhook: per sicurezza non viene inviato nulla. \
             Correggere l'oggetto e inviare di nuovo; se si ripete, avvisare \
             l'amministratore.",
        ),
    }
}

pub fn not_this_account(account: &Account) -> String {
    format!(
        "il ticket non appartiene alla casella PEC {} (manca il suo tag), quindi la \
         risposta non parte come PEC.",
        account.address.as_str()
    )
}

pub fn not_an_agent_reply() -> String {
    "l'ultimo commento pubblico non è di un agente (per esempio è di un utente in copia): i \
     commenti degli utenti finali non vengono inviati come PEC."
        .to_owned()
}

pub fn reply_went_instead() -> String {
    "il modello non è stato inviato perché la risposta pubblica scritta nello stesso \
     aggiornamento è già partita come PEC (una sola PEC per azione dell'agente). Per inviare \
     anche il modello, aggiungere di nuovo il tag."
        .to_owned()
}

pub fn nothing_sent() -> String {
    "il commento da inviare non è stato trovato sul ticket, o non è una risposta pubblica di \
     un agente."
        .to_owned()
}

/// `<what>` with ` a <recipients>` when there are any, then `<after>`, in bold.
fn head(what: &str, to: &[PecAddress], after: &str) -> String {
    let to = if to.is_empty() {
        String::new()
    } else {
        format!(" a {}", list(to))
    };
    format!("<p><strong>{what}{to}{after}</strong></p>")
}

pub fn not_sent(to: &[PecAddress], why: &str) -> String {
    format!("{}<p>{}</p>", head("PEC non inviata", to, ""), esc(why))
}

/// A send whose final answer never came (the PEC may have left).
pub fn maybe_sent(to: &[PecAddress], why: &str) -> String {
    format!(
        "{}<p>{}</p>",
        head("PEC forse inviata", to, ": in attesa di conferma"),
        esc(why)
    )
}

/// A send never confirmed, given up: it may have left; only the receipts can tell.
pub fn never_confirmed(to: &[PecAddress], attempts: u32, why: &str) -> String {
    format!(
        "{}<p>Ultimo esito: {}</p><p>Il gestore non ha mai confermato la ricezione e non è \
         arrivata alcuna ricevuta di accettazione: il connettore non riproverà. Verificare \
         nella casella PEC (cartella della posta inviata e ricevute) prima di inviare di \
         nuovo dal ticket.</p>",
        head(
            "PEC non confermata",
            to,
            &format!(" dopo {attempts} tentativi")
        ),
        esc(why)
    )
}

/// Said in the sent note of a send repeated after an unconfirmed one.
pub const RESENT: &str = "<p>Invio ripetuto: al tentativo precedente il gestore non aveva \
     confermato la ricezione e, letta la casella, non è arrivata la sua ricevuta di \
     accettazione.</p>";

pub fn will_retry(to: &[PecAddress], why: &str) -> String {
    format!("{}<p>{}</p>", head("Invio PEC", to, " rimandato"), esc(why))
}

pub fn given_up(to: &[PecAddress], attempts: u32, why: &str) -> String {
    format!(
        "{}<p>Ultimo errore: {}</p><p>Il connettore non riproverà più: per inviarla, \
         ripetere l'invio dal ticket.</p>",
        head(
            "PEC non inviata",
            to,
            &format!(" dopo {attempts} tentativi")
        ),
        esc(why)
    )
}

pub fn egress_ip_it(ip: Option<&str>) -> String {
    match ip {
        Some(ip) => format!("L'indirizzo IP da autorizzare presso il gestore è {ip}."),
        None => "Questa installazione non ha un IP di uscita fisso: attivarlo (parametro \
                 StaticEgressIp del deploy) e comunicare al gestore l'indirizzo indicato \
                 nell'output EgressIp."
            .to_owned(),
    }
}

pub fn compose_it(e: &ComposeError) -> String {
    match e {
        ComposeError::TooLarge { .. } => "Il messaggio con i suoi allegati supera la \
             dimensione che i gestori PEC accettano (50 MB contando ogni destinatario): \
             ridurre gli allegati o i destinatari e inviare di nuovo."
            .to_owned(),
        ComposeError::TooManyRecipients { limit, .. } => {
            format!("Troppi destinatari (al massimo {limit}): dividere l'invio e riprovare.")
        }
        ComposeError::NoRecipient => "Nessun destinatario: indicare l'indirizzo PEC a cui \
             inviare."
            .to_owned(),
        other => format!(
            "Il messaggio non può essere composto: {other}. Correggere l'oggetto o il testo \
             e inviare di nuovo."
        ),
    }
}

/// The note on the ticket for a webhook call refused for a reason agents can act on; `None`
/// for the connector's own passing trouble (Zendesk calls again).
pub fn accept_refusal(e: &AcceptError) -> Option<String> {
    let why = match e {
        AcceptError::UnknownAccount(id) | AcceptError::OtherInstance(id) => format!(
            "il trigger nomina la casella PEC «{id}», che non è registrata nel connettore per \
             questo Zendesk. Controllare il trigger o registrare la casella."
        ),
        AcceptError::NoAccount(_) => "il ticket non viene da una casella PEC registrata e \
             la chiamata non ne nomina una."
            .to_owned(),
        AcceptError::Disabled(id) => format!(
            "la casella PEC «{id}» è disattivata nel connettore: riattivarla e inviare di \
             nuovo."
        ),
        AcceptError::UnexpectedKeys(keys) => format!(
            "la chiamata del trigger contiene campi che il trigger non prevede ({}). Di \
             solito succede quando un segnaposto (per esempio l'oggetto del ticket) contiene \
             virgolette: per sicurezza il connettore non invia nulla. Inviare di nuovo dopo \
             aver corretto l'oggetto.",
            keys.join(", ")
        ),
        AcceptError::UnknownTicket(_)
        | AcceptError::Store(_)
        | AcceptError::Zendesk(_)
        | AcceptError::Instance(_) => return None,
    };
    Some(refused(&why))
}

/// A one-paragraph explanation of a failed send for the agents who see it on the ticket.
pub fn send_error(e: &SendError) -> String {
    match e {
        SendError::AuthRejected { server, reply, .. } => format!(
            "Il gestore ha rifiutato la password della casella PEC ({server} ha risposto: \
             {reply}). Le password per programmi di posta scadono (Aruba: ogni 4 mesi) o \
             vengono cambiate dal webmail: l'amministratore deve aggiornare la password \
             dell'account nel connettore. Il messaggio non è stato inviato."
        ),
        SendError::SenderBlocked { server, reply, .. } => format!(
            "Il gestore PEC blocca l'indirizzo IP da cui il connettore invia ({server} ha \
             risposto: {reply}). Chiedere al gestore di autorizzare l'IP del connettore \
             (o configurare un IP di uscita fisso e comunicarlo al gestore), poi inviare di \
             nuovo. Il messaggio non è stato inviato."
        ),
        SendError::MessageTooLarge { reply, .. } => format!(
            "Il messaggio supera la dimensione massima accettata dal gestore PEC \
             ({reply}). Ridurre o togliere gli allegati (molti gestori accettano al massimo \
             30-100 MB, contando l'aumento dovuto alla codifica) e inviare di nuovo. Il \
             messaggio non è stato inviato."
        ),
        SendError::RecipientRejected {
            recipient, reply, ..
        } => format!(
            "Il gestore ha rifiutato il destinatario {recipient} ({reply}). Verificare che \
             l'indirizzo sia scritto correttamente e sia una casella PEC attiva (ad esempio \
             su INI-PEC o IPA), poi inviare di nuovo. Il messaggio non è stato inviato a \
             nessun destinatario."
        ),
        SendError::Transient { reply, .. } => format!(
            "Il gestore PEC non può accettare il messaggio in questo momento ({reply}). Il \
             connettore riproverà automaticamente più tardi: non serve fare nulla."
        ),
        SendError::Timeout { server, .. } => format!(
            "Il server di posta del gestore ({server}) non ha risposto in tempo. Il \
             connettore riproverà automaticamente più tardi: non serve fare nulla."
        ),
        SendError::Ambiguous {
            server, timed_out, ..
        } => {
            let what = if *timed_out {
                "ha ricevuto il messaggio per intero ma non ha risposto in tempo"
            } else {
                "ha ricevuto il messaggio per intero ma la connessione si è interrotta prima \
                 della risposta"
            };
            format!(
                "Il server di posta del gestore ({server}) {what}: il gestore non ha \
                 confermato l'invio, ma la PEC potrebbe essere partita. Prima di riprovare \
                 il connettore controllerà le ricevute (accettazione) arrivate nella casella, \
                 per non inviarla due volte: non serve fare nulla, e non inviarla di nuovo a \
                 mano."
            )
        }
        SendError::Connect { server, .. } => format!(
            "Non è stato possibile collegarsi al server di posta del gestore ({server}). \
             Il connettore riproverà automaticamente più tardi; se il problema continua, \
             verificare host e porta SMTP dell'account."
        ),
        SendError::Tls { server, .. } => format!(
            "Non è stato possibile stabilire una connessione sicura con {server}: il \
             certificato del server non è valido o non è attendibile. L'amministratore deve \
             verificare host e porta SMTP dell'account (di norma la porta 465). Il \
             messaggio non è stato inviato."
        ),
        SendError::Other { server, reason } => format!(
            "L'invio tramite {server} non è riuscito: {reason}. Il messaggio non è stato \
             inviato; se il problema continua, contattare l'amministratore del connettore."
        ),
    }
}

/// Zendesk answered what the connector did not expect.
pub fn zendesk_trouble(e: &impl std::fmt::Display) -> String {
    format!("Zendesk non ha risposto come previsto ({e}).")
}

/// The connector could not read its own state.
pub const STORE_TROUBLE: &str =
    "Il connettore non ha potuto leggere il proprio archivio; riproverà.";

/// The ticket has no requester to send to.
pub const NO_REQUESTER: &str = "Il ticket non ha un richiedente a cui inviare la PEC.";

/// The files of a reply weigh more than a PEC may carry: `total` bytes for `recipients`, over
/// `limit`; `list` names each with its size.
pub fn files_too_large(total: u64, recipients: usize, limit: u64, list: &[String]) -> String {
    format!(
        "Gli allegati pesano {:.1} MB in tutto{}: oltre il limite di {:.0} MB che il \
         connettore invia in una PEC (i gestori contano ogni destinatario). Nessun \
         file è stato scaricato. Allegati: {}. Ridurre o dividere gli allegati e \
         inviare di nuovo.",
        total as f64 / 1e6,
        if recipients > 1 {
            format!(" per {recipients} destinatari")
        } else {
            String::new()
        },
        limit as f64 / 1e6,
        list.join(", ")
    )
}

/// Why a file of the reply did not go with the PEC.
pub enum SkippedFile<'a> {
    /// The account does not send attachments.
    Disabled,
    /// Over this many bytes.
    Over(u64),
    /// Hosted outside the Zendesk instance (this host).
    ForeignHost(&'a str),
    /// Its address is not usable.
    BadUrl,
}

/// A file left out of the PEC, with why, as the sent note lists it.
pub fn skipped_file(name: &str, why: SkippedFile<'_>) -> String {
    match why {
        SkippedFile::Disabled => format!("{name} (invio allegati disattivato)"),
        SkippedFile::Over(limit) => format!("{name} (oltre {} MB)", limit / 1_000_000),
        SkippedFile::ForeignHost(host) => format!("{name} (ospitato fuori da Zendesk: {host})"),
        SkippedFile::BadUrl => format!("{name} (indirizzo del file non valido)"),
    }
}
