//! What agents read in Zendesk, in Italian, as pure functions, in one place so the texts can be
//! reviewed together: here what an inbound message becomes (a parsed message, or the raw bytes
//! of one that could not be parsed, in; ticket drafts and notes out) and the alerts; in
//! [`outbound`] the notes a send leaves on its ticket. Everything taken from a message or a
//! ticket is HTML-escaped and has its `{{` placeholders neutralised before it reaches Zendesk
//! ([`esc`]).

use pec::{Kind, PecMessage, ReceiptKind, Verdict};
use zendesk::{escape_placeholders, text_to_html};

use crate::domain::Fact;
use crate::domain::tags::{
    ALERT_TAG, TAG, TOO_LARGE_TAG, UNIMPORTABLE_TAG, UNREADABLE_TAG, account_tag, kind_tag,
    signature_tag,
};

pub mod outbound;

/// Zendesk cuts comment bodies at 64 kB; stay under it with room for our own notice.
pub const COMMENT_LIMIT: usize = 60 * 1024;
/// Zendesk's largest attachment.
pub const FILE_LIMIT: usize = 50 * 1024 * 1024;

/// A file to upload and attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFile {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// A new ticket: the first comment is the requester's message; the note holds the PEC facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketDraft {
    pub subject: String,
    pub requester_email: String,
    pub requester_name: Option<String>,
    /// The first comment, HTML: the requester's message (public), or for a receipt an internal
    /// note.
    pub html_body: String,
    pub public: bool,
    /// Files attached to the first comment.
    pub files: Vec<UploadFile>,
    pub tags: Vec<String>,
    /// The internal note that follows (PEC facts, files too large to attach, problems).
    pub note_html: Option<String>,
    /// Whether the note says more than `facts`: only then is it worth an update of its own
    /// when the ticket fields hold the facts.
    pub note_essential: bool,
    /// The PEC facts, for the ticket fields provisioned for them (set in the create request).
    pub facts: Vec<(Fact, String)>,
}

/// A comment on an existing ticket (a reply from the citizen, or a receipt note).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommentDraft {
    pub html_body: String,
    pub public: bool,
    pub files: Vec<UploadFile>,
    pub tags: Vec<String>,
    /// Who writes it (a Zendesk user id); `None`: the connector's API user.
    pub author_id: Option<u64>,
    /// The ticket's status after the comment, when it changes (a reply reopens a solved ticket).
    pub status: Option<String>,
}

/// Most items any list in a ticket or note shows (recipients, files, ...); the rest are
/// counted. Notes stay small whatever the sender put in a message.
pub const LIST_CAP: usize = 20;

/// Most files attached to one comment (the rest stay in the attached original).
pub const FILES_CAP: usize = 50;

/// The first [`LIST_CAP`] items, comma-separated, and how many more there are.
fn capped(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(LIST_CAP)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_CAP {
        out.push_str(&format!(" e altri {}", items.len() - LIST_CAP));
    }
    out
}

/// HTML-escapes text from a message and neutralises Zendesk placeholders.
pub fn esc(text: &str) -> String {
    escape_placeholders(&pec::encode::escape_html(text))
}

fn verdict_it(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "valida (firma del gestore PEC verificata)",
        Verdict::Invalid => "NON valida: il messaggio è stato alterato o la firma è danneggiata",
        Verdict::Untrusted => {
            "integra ma non attendibile: il firmatario non è un gestore PEC accreditato"
        }
        Verdict::Missing => "assente",
    }
}

fn kind_it(kind: Kind) -> &'static str {
    match kind {
        Kind::Envelope => "PEC ricevuta (busta di trasporto)",
        Kind::Anomaly => "Messaggio non certificato arrivato nella casella PEC (busta di anomalia)",
        Kind::NonPec => "Messaggio di posta ordinaria (non PEC)",
        Kind::Receipt(r) => match r {
            ReceiptKind::Accettazione => "Ricevuta di accettazione",
            ReceiptKind::NonAccettazione => "Avviso di non accettazione",
            ReceiptKind::PresaInCarico => "Ricevuta di presa in carico",
            ReceiptKind::AvvenutaConsegna => "Ricevuta di avvenuta consegna",
            ReceiptKind::ErroreConsegna => "Avviso di mancata consegna",
            ReceiptKind::PreavvisoErroreConsegna => "Preavviso di mancata consegna",
            ReceiptKind::RilevazioneVirus => "Avviso di rilevazione virus",
        },
    }
}

/// Whether Zendesk can take `address` as a requester's e-mail: a sender it refuses (a local
/// `MAILER-DAEMON@localhost`, a malformed header) would make the ticket creation fail on every
/// run, so such a message gets the mailbox as requester instead (the note keeps the real sender).
fn usable_email(address: &str) -> bool {
    crate::domain::PecAddress::parse(address).is_ok()
}

/// The name the signed original gets as an attachment.
fn evidence_name(kind: Kind) -> String {
    match kind {
        Kind::Envelope => "messaggio-pec.eml".to_owned(),
        Kind::Anomaly => "busta-anomalia.eml".to_owned(),
        Kind::NonPec => "messaggio-originale.eml".to_owned(),
        Kind::Receipt(r) => format!("{}.eml", r.as_str()),
    }
}

/// The original message's body for the first comment, cut under Zendesk's limit at a clean
/// point; when cut, the full body goes along as an `.html` file.
fn body_html(msg: &PecMessage) -> (String, Option<UploadFile>) {
    let original = msg.original.as_ref();
    let html = original
        .and_then(|o| o.html.as_deref())
        .filter(|h| !h.trim().is_empty());
    let text = original
        .and_then(|o| o.text.as_deref())
        .filter(|t| !t.trim().is_empty());
    let full = match (html, text) {
        (Some(h), _) => escape_placeholders(h),
        (None, Some(t)) => text_to_html(t),
        (None, None) => "<p><i>(messaggio senza testo)</i></p>".to_owned(),
    };
    if full.len() <= COMMENT_LIMIT {
        return (full, None);
    }
    // Too long: show the text (or the HTML's text) cut at a line break, attach the full body.
    let plain = text
        .map(str::to_owned)
        .unwrap_or_else(|| strip_tags(html.unwrap_or("")));
    let cut = cut_at_line(&plain, COMMENT_LIMIT / 2);
    let shown = format!(
        "{}<p><i>[Testo troncato: il messaggio completo è nell'allegato testo-completo.html]</i></p>",
        text_to_html(cut)
    );
    let file = UploadFile {
        filename: "testo-completo.html".to_owned(),
        content_type: "text/html".to_owned(),
        data: match html {
            Some(h) => h.as_bytes().to_vec(),
            None => format!("<pre>{}</pre>", esc(text.unwrap_or(""))).into_bytes(),
        },
    };
    (shown, Some(file))
}

/// The longest prefix of `text` within `limit` bytes that ends at a line break (or a char
/// boundary when there is none).
fn cut_at_line(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind('\n') {
        Some(i) if i > limit / 2 => &text[..i],
        _ => &text[..end],
    }
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Splits files into those Zendesk takes and a note line for each one it would refuse.
fn within_limits(files: Vec<UploadFile>, too_big: &mut Vec<String>) -> Vec<UploadFile> {
    within_limit(files, FILE_LIMIT, too_big)
}

fn within_limit(
    files: Vec<UploadFile>,
    limit: usize,
    too_big: &mut Vec<String>,
) -> Vec<UploadFile> {
    files
        .into_iter()
        .filter_map(|f| {
            if f.data.len() > limit {
                too_big.push(format!(
                    "{} ({})",
                    esc(&f.filename),
                    human_size(f.data.len())
                ));
                None
            } else {
                Some(f)
            }
        })
        .collect()
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} kB", bytes as f64 / 1024.0)
    }
}

/// The original's attachments, taken out of the message (large ones are not copied).
fn take_attachments(msg: &mut PecMessage) -> Vec<UploadFile> {
    let Some(original) = msg.original.as_mut() else {
        return Vec::new();
    };
    std::mem::take(&mut original.attachments)
        .into_iter()
        .map(|a| UploadFile {
            content_type: if a.content_type.is_empty() {
                "application/octet-stream".to_owned()
            } else {
                a.content_type
            },
            filename: a.filename,
            data: a.data,
        })
        .collect()
}

fn facts_list(msg: &PecMessage) -> String {
    let mut items = Vec::new();
    let mut item = |label: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            items.push(format!("<li>{label}: {}</li>", esc(&v)));
        }
    };
    item("Mittente", msg.sender());
    item("Destinatari", Some(capped(&msg.recipients())));
    for (fact, value) in facts_of(msg) {
        let label = match fact {
            Fact::Identificativo => "Identificativo PEC",
            Fact::Data => "Data di certificazione",
            Fact::Gestore => "Gestore",
            Fact::Firma => "Firma",
        };
        item(label, Some(value));
    }
    format!("<ul>{}</ul>", items.concat())
}

/// The PEC facts the ticket fields hold (those the message has).
pub fn facts_of(msg: &PecMessage) -> Vec<(Fact, String)> {
    let d = msg.daticert.as_ref();
    let firma = (msg.kind.is_pec() || msg.signature.verdict != Verdict::Missing).then(|| {
        let mut firma = verdict_it(msg.signature.verdict).to_owned();
        if let Some(signer) = &msg.signature.signer {
            firma.push_str(&format!(" — firmatario: {signer}"));
        }
        firma
    });
    [
        (
            Fact::Identificativo,
            msg.identificativo().map(str::to_owned),
        ),
        (
            Fact::Data,
            d.and_then(|d| d.data)
                .map(|t| t.format("%d/%m/%Y %H:%M:%S (%z)").to_string()),
        ),
        (Fact::Gestore, d.and_then(|d| d.gestore_emittente.clone())),
        (Fact::Firma, firma),
    ]
    .into_iter()
    .filter_map(|(f, v)| Some((f, v.filter(|v| !v.is_empty())?)))
    .collect()
}

fn reference(marker: &str) -> String {
    format!("<p><small>Rif. connettore: {}</small></p>", esc(marker))
}

/// The body to show, and the files to attach: the original's attachments, the full body when it
/// was cut, and the message as received (the evidence), with those over Zendesk's limit listed
/// apart.
fn message_parts(msg: &mut PecMessage, raw: Vec<u8>) -> (String, Vec<UploadFile>, Vec<String>) {
    let (body, full_body) = body_html(msg);
    let mut files = take_attachments(msg);
    files.extend(full_body);
    files.push(UploadFile {
        filename: evidence_name(msg.kind),
        content_type: "message/rfc822".to_owned(),
        data: raw,
    });
    let mut too_big = Vec::new();
    let mut files = within_limits(files, &mut too_big);
    if files.len() > FILES_CAP {
        // The evidence (last) always goes; the attachments beyond the cap are in it.
        let evidence = files.pop();
        for f in files.drain(FILES_CAP - 1..) {
            too_big.push(esc(&f.filename));
        }
        files.extend(evidence);
    }
    (body, files, too_big)
}

/// A new ticket from an envelope, an anomaly, ordinary mail, or a receipt that matches nothing
/// we sent. `mailbox` is the account's PEC address; `marker` identifies this message on the
/// ticket. `raw` is the message as received, attached as evidence.
pub fn new_ticket(mut msg: PecMessage, raw: Vec<u8>, mailbox: &str, marker: &str) -> TicketDraft {
    if matches!(msg.kind, Kind::Receipt(_)) {
        return receipt_ticket(&msg, raw, mailbox, marker, false);
    }
    let (body, files, too_big) = message_parts(&mut msg, raw);

    let name = msg
        .original
        .as_ref()
        .and_then(|o| o.from.as_ref())
        .and_then(|m| m.name.clone());
    let (requester_email, requester_name) = match msg.sender().filter(|s| usable_email(s)) {
        Some(s) => (s, name),
        None => (mailbox.to_owned(), Some("Mittente sconosciuto".to_owned())),
    };
    // One line: a title with a TAB or a line break would follow every reply into its header.
    let subject = crate::domain::one_line(&msg.subject(), usize::MAX);
    let subject = if subject.trim().is_empty() {
        "(senza oggetto)".to_owned()
    } else {
        subject
    };

    let mut note = format!("<p><b>{}</b></p>{}", kind_it(msg.kind), facts_list(&msg));
    let mut extra = too_big_note(&too_big);
    for w in msg.warnings.iter().take(LIST_CAP) {
        extra.push_str(&format!("<p>Nota: {}</p>", esc(w)));
    }
    let note_essential = !extra.is_empty();
    note.push_str(&extra);
    note.push_str(&reference(marker));
    let facts = facts_of(&msg);

    let mut tags = vec![
        TAG.to_owned(),
        account_tag(mailbox),
        kind_tag(msg.kind).to_owned(),
    ];
    if msg.kind.is_pec() {
        tags.push(signature_tag(msg.signature.verdict).to_owned());
    }
    TicketDraft {
        subject,
        requester_email,
        requester_name,
        html_body: body,
        public: true,
        files,
        tags,
        note_html: Some(note),
        note_essential,
        facts,
    }
}

fn too_big_note(too_big: &[String]) -> String {
    if too_big.is_empty() {
        return String::new();
    }
    format!(
        "<p>Allegati non caricati (oltre il limite di Zendesk di {} per file, o oltre {FILES_CAP} allegati): {}. Si trovano nel messaggio originale.</p>",
        human_size(FILE_LIMIT),
        capped(too_big)
    )
}

/// A receipt as the evidence attached to its note or ticket, and the sentence telling the agent
/// when it is too big for Zendesk (a non-delivery receipt can carry the whole original message):
/// it then stays only in the PEC mailbox, and the note says so rather than dropping it silently.
fn receipt_evidence(msg: &PecMessage, raw: Vec<u8>) -> (Vec<UploadFile>, String) {
    let mut too_big = Vec::new();
    let files = within_limits(
        vec![UploadFile {
            filename: evidence_name(msg.kind),
            content_type: "message/rfc822".to_owned(),
            data: raw,
        }],
        &mut too_big,
    );
    let left_out = too_big
        .first()
        .map(|named| {
            format!(
                "<p>La ricevuta {named} non è stata allegata: supera il limite di Zendesk di {} \
                 per file. Resta nella casella PEC.</p>",
                human_size(FILE_LIMIT)
            )
        })
        .unwrap_or_default();
    (files, left_out)
}

/// A ticket of its own for a receipt, whose first comment is an internal note (the behaviour of
/// the established product). `matched` says whether it is about a PEC we sent.
pub fn receipt_ticket(
    msg: &PecMessage,
    raw: Vec<u8>,
    mailbox: &str,
    marker: &str,
    matched: bool,
) -> TicketDraft {
    let (files, left_out) = receipt_evidence(msg, raw);
    let mut html = format!(
        "<p><b>{}</b></p>{}{}",
        kind_it(msg.kind),
        receipt_sentence(msg),
        facts_list(msg)
    );
    if !matched {
        html.push_str("<p>Non è stato trovato il messaggio inviato a cui si riferisce.</p>");
    }
    html.push_str(&left_out);
    html.push_str(&reference(marker));
    let subject = msg.raw_subject.trim();
    TicketDraft {
        subject: if subject.is_empty() {
            kind_it(msg.kind).to_owned()
        } else {
            subject.to_owned()
        },
        requester_email: msg
            .from
            .as_ref()
            .map(|m| m.address.clone())
            .filter(|a| usable_email(a))
            .unwrap_or_else(|| mailbox.to_owned()),
        requester_name: Some("Gestore PEC".to_owned()),
        html_body: html,
        public: false,
        files,
        // Not the account's tag: a public reply here must not leave as a PEC (to the
        // provider's robot address).
        tags: vec![
            TAG.to_owned(),
            kind_tag(msg.kind).to_owned(),
            signature_tag(msg.signature.verdict).to_owned(),
        ],
        note_html: None,
        note_essential: true,
        facts: Vec::new(),
    }
}

/// The ticket that tells the admins an account's mailbox cannot be read, and what to do.
pub fn alert_ticket(
    account: &crate::domain::Account,
    problem: &crate::domain::AccountProblem,
) -> TicketDraft {
    use crate::domain::ProblemKind;
    let address = account.address.as_str();
    let (subject, advice) = match problem.kind {
        ProblemKind::LoginRefused => (
            format!("Connettore PEC: accesso rifiutato alla casella {address}"),
            "Il gestore ha rifiutato la password. Le password per i programmi di posta scadono (Aruba: ogni 4 mesi) e con la verifica in due passaggi serve una password dedicata; in alcuni casi l'accesso da programmi di posta va abilitato nella webmail. Generare una nuova password e aggiornare l'account nel connettore.",
        ),
        ProblemKind::Tls => (
            format!("Connettore PEC: connessione sicura non riuscita con la casella {address}"),
            "Il certificato del server non è stato accettato o la connessione TLS non è riuscita. Verificare il nome del server IMAP configurato per l'account.",
        ),
        ProblemKind::Unreachable => (
            format!("Connettore PEC: la casella {address} non è raggiungibile"),
            "Il server IMAP non risponde da un po'. Verificare nome e porta del server; se il problema persiste, il gestore potrebbe bloccare l'indirizzo IP del connettore.",
        ),
        ProblemKind::Credentials => (
            format!("Connettore PEC: password mancante per la casella {address}"),
            "La password dell'account non è disponibile nel connettore. Registrare di nuovo la password dell'account.",
        ),
    };
    let html = format!(
        "<p><b>La casella PEC {} non viene letta dal {}.</b></p><p>{}</p><p>Dettaglio: {}</p><p>I messaggi non vanno persi: saranno importati appena la casella sarà di nuovo leggibile. Questo ticket riceverà una nota quando il problema sarà risolto.</p>",
        esc(address),
        problem.since.format("%d/%m/%Y %H:%M UTC"),
        esc(advice),
        esc(&problem.message)
    );
    alert_draft(address, subject, html)
}

/// An alert ticket about the mailbox `address`: an internal note from "Connettore PEC", tagged
/// as the connector's alert. Not with the account's tag: a public reply here must not leave as
/// a PEC (to the office's own box).
fn alert_draft(address: &str, subject: String, html: String) -> TicketDraft {
    TicketDraft {
        subject,
        requester_email: address.to_owned(),
        requester_name: Some("Connettore PEC".to_owned()),
        html_body: html,
        public: false,
        files: Vec::new(),
        tags: vec![TAG.to_owned(), ALERT_TAG.to_owned()],
        note_html: None,
        note_essential: true,
        facts: Vec::new(),
    }
}

/// The note that closes an incident on its alert ticket.
pub fn recovered_note(at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "<p><b>Risolto</b>: la casella è di nuovo leggibile dal {}. I messaggi arrivati nel frattempo vengono importati.</p>",
        at.format("%d/%m/%Y %H:%M UTC")
    )
}

/// Said on a new ticket made for a message whose ticket is closed or deleted.
pub fn closed_ticket_line(ticket: u64) -> String {
    format!(
        "<p>Si riferisce al ticket #{ticket}, che è chiuso o eliminato: il messaggio è registrato in questo nuovo ticket.</p>"
    )
}

/// A new ticket for a message that could not be parsed at all: the raw message attached and the
/// reason, so nothing is lost.
pub fn unreadable_ticket(raw: Vec<u8>, reason: &str, mailbox: &str, marker: &str) -> TicketDraft {
    let mut too_big = Vec::new();
    let files = within_limits(
        vec![UploadFile {
            filename: "messaggio-non-leggibile.eml".to_owned(),
            content_type: "message/rfc822".to_owned(),
            data: raw,
        }],
        &mut too_big,
    );
    let mut note = format!(
        "<p><b>Messaggio non leggibile</b></p><p>Il connettore non è riuscito a leggere questo messaggio: {}. Il messaggio originale è allegato così come è arrivato.</p>",
        esc(reason)
    );
    if !too_big.is_empty() {
        note.push_str(&format!(
            "<p>Il messaggio ({}) supera il limite di Zendesk e non è allegato: si trova nella casella PEC.</p>",
            too_big.join(", ")
        ));
    }
    note.push_str(&reference(marker));
    TicketDraft {
        subject: "Messaggio PEC non leggibile".to_owned(),
        requester_email: mailbox.to_owned(),
        requester_name: Some("Casella PEC".to_owned()),
        html_body: "<p>Messaggio arrivato nella casella PEC che il connettore non è riuscito a leggere: vedi la nota interna e l'allegato.</p>".to_owned(),
        public: true,
        files,
        // Not the account's tag: a public reply here must not leave as a PEC (to the office's
        // own box).
        tags: vec![TAG.to_owned(), UNREADABLE_TAG.to_owned()],
        note_html: Some(note),
        note_essential: true,
        facts: Vec::new(),
    }
}

/// A reply from the citizen on the ticket of the PEC it answers: a public comment with the
/// message, its attachments and the signed original; the PEC facts in a short footer.
pub fn reply_comment(mut msg: PecMessage, raw: Vec<u8>, marker: &str) -> CommentDraft {
    let (body, files, too_big) = message_parts(&mut msg, raw);
    let mut html = body;
    html.push_str(&format!(
        "<hr><p><small>{}</small></p>{}",
        kind_it(msg.kind),
        facts_list(&msg)
    ));
    if !too_big.is_empty() {
        html.push_str(&format!(
            "<p><small>Allegati non caricati (oltre {} o oltre {FILES_CAP} allegati): {}</small></p>",
            human_size(FILE_LIMIT),
            capped(&too_big)
        ));
    }
    html.push_str(&reference(marker));
    let mut tags = vec![kind_tag(msg.kind).to_owned()];
    if msg.kind.is_pec() {
        tags.push(signature_tag(msg.signature.verdict).to_owned());
    }
    CommentDraft {
        html_body: html,
        public: true,
        files,
        tags,
        ..CommentDraft::default()
    }
}

/// What a receipt says, in one Italian sentence.
fn receipt_sentence(msg: &PecMessage) -> String {
    let Some(r) = msg.receipt() else {
        return String::new();
    };
    let when = r
        .data
        .map(|t| format!(" il {}", t.format("%d/%m/%Y alle %H:%M:%S (%z)")))
        .unwrap_or_default();
    let to = if r.consegna.is_empty() {
        capped(&msg.recipients())
    } else {
        capped(
            &r.consegna
                .iter()
                .map(|c| (*c).to_owned())
                .collect::<Vec<_>>(),
        )
    };
    let reason = r
        .errore_esteso
        .map(str::to_owned)
        .or_else(|| r.errore.filter(|e| *e != "nessuno").map(str::to_owned))
        .unwrap_or_else(|| "motivo non indicato".to_owned());
    let virus = if r.virus { " (rilevato un virus)" } else { "" };
    let sentence = match r.kind {
        ReceiptKind::Accettazione => {
            format!("La PEC è stata accettata dal gestore{when} per l'invio a {to}.")
        }
        ReceiptKind::NonAccettazione => {
            format!(
                "La PEC NON è stata accettata dal gestore e non è stata inviata{virus}: {reason}."
            )
        }
        ReceiptKind::PresaInCarico => {
            format!("Il gestore del destinatario ha preso in carico la PEC{when}.")
        }
        ReceiptKind::AvvenutaConsegna => format!("La PEC è stata consegnata a {to}{when}."),
        ReceiptKind::ErroreConsegna => {
            format!("Mancata consegna a {to}{when}{virus}: {reason}.")
        }
        ReceiptKind::PreavvisoErroreConsegna => format!(
            "Entro 12 ore dall'invio non è arrivata la conferma di consegna a {to}: la consegna potrebbe non riuscire ({reason})."
        ),
        ReceiptKind::RilevazioneVirus => {
            format!("Il gestore ha rilevato un virus nella PEC per {to}{when}: {reason}.")
        }
    };
    format!("<p>{}</p>", esc(&sentence))
}

/// The internal note recording a receipt on the ticket of the PEC it is about, with the receipt
/// attached as evidence and the delivery-state tag.
pub fn receipt_note(msg: &PecMessage, raw: Vec<u8>, marker: &str) -> CommentDraft {
    let (files, left_out) = receipt_evidence(msg, raw);
    let mut html = format!(
        "<p><b>{}</b></p>{}",
        kind_it(msg.kind),
        receipt_sentence(msg)
    );
    let d = msg.daticert.as_ref();
    let mut facts = Vec::new();
    if let Some(id) = msg.receipt().and_then(|r| r.identificativo) {
        facts.push(format!("<li>Identificativo PEC: {}</li>", esc(id)));
    }
    if let Some(g) = d.and_then(|d| d.gestore_emittente.as_deref()) {
        facts.push(format!("<li>Gestore: {}</li>", esc(g)));
    }
    facts.push(format!(
        "<li>Firma: {}</li>",
        esc(verdict_it(msg.signature.verdict))
    ));
    html.push_str(&format!("<ul>{}</ul>", facts.concat()));
    let mut tags = vec![kind_tag(msg.kind).to_owned()];
    if msg.signature.verdict == Verdict::Invalid {
        html.push_str(
            "<p><b>Attenzione</b>: la firma del gestore su questa ricevuta NON è valida (il \
             messaggio è stato alterato o la firma è danneggiata), quindi lo stato di consegna \
             non è stato aggiornato. Verificare la ricevuta allegata.</p>",
        );
        tags.push(signature_tag(Verdict::Invalid).to_owned());
    }
    html.push_str(&left_out);
    html.push_str(&reference(marker));
    CommentDraft {
        html_body: html,
        public: false,
        files,
        tags,
        ..CommentDraft::default()
    }
}

/// The value of header `name` in a header section, decoded (RFC 2047), if present.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    use mailparse::MailHeaderMap;
    let (headers, _) = mailparse::parse_headers(header).ok()?;
    headers.get_first_value(name).map(|v| v.trim().to_owned())
}

/// The address in a header value such as `"Name" <a@b.it>` (the first one).
fn address_in(value: &str) -> Option<String> {
    let addrs = mailparse::addrparse(value).ok()?;
    addrs.iter().find_map(|a| match a {
        mailparse::MailAddr::Single(s) => Some(s.addr.clone()),
        mailparse::MailAddr::Group(g) => g.addrs.first().map(|s| s.addr.clone()),
    })
}

/// A ticket for a message that could not be imported, parked so that the PEC after it still
/// arrive: the reason, and the raw message when it could be read again (it also stays in the
/// mailbox). An internal note from the office's own box, without the account's tag: a public
/// reply here never leaves as PEC.
pub fn parked_ticket(
    raw: Option<Vec<u8>>,
    reason: &str,
    uid: u32,
    mailbox: &str,
    marker: &str,
) -> TicketDraft {
    let mut too_big = Vec::new();
    let files = within_limits(
        raw.into_iter()
            .map(|data| UploadFile {
                filename: "messaggio-non-importabile.eml".to_owned(),
                content_type: "message/rfc822".to_owned(),
                data,
            })
            .collect(),
        &mut too_big,
    );
    let mut html = format!(
        "<p><b>PEC non importabile</b></p><p>Il connettore non è riuscito a importare il \
         messaggio UID {uid} della casella {} e lo ha messo da parte, così le PEC successive \
         continuano ad arrivare.</p><p>Motivo: {}</p>",
        esc(mailbox),
        esc(&cut_at_line(reason, 2000).replace('\n', " "))
    );
    html.push_str(if files.is_empty() && too_big.is_empty() {
        "<p>Il messaggio non è stato restituito dal server: si trova (se non è stato cancellato) \
         nella casella PEC.</p>"
    } else if files.is_empty() {
        "<p>Il messaggio supera il limite di Zendesk e non è allegato: si trova nella casella \
         PEC.</p>"
    } else {
        "<p>Il messaggio originale è allegato così come è arrivato, e resta anche nella casella \
         PEC.</p>"
    });
    html.push_str(&reference(marker));
    TicketDraft {
        subject: "PEC non importabile".to_owned(),
        requester_email: mailbox.to_owned(),
        requester_name: Some("Casella PEC".to_owned()),
        html_body: html,
        public: false,
        files,
        tags: vec![TAG.to_owned(), UNIMPORTABLE_TAG.to_owned()],
        note_html: None,
        note_essential: true,
        facts: Vec::new(),
    }
}

/// When even the parked message's ticket cannot be made: an alert naming the message's UID.
pub fn parked_alert(
    account: &crate::domain::Account,
    uid: u32,
    reason: &str,
    error: &str,
) -> TicketDraft {
    let address = account.address.as_str();
    let html = format!(
        "<p><b>Un messaggio della casella PEC {} non è stato importato.</b></p><p>Il messaggio \
         con UID {uid} non è stato importato ({}), e nemmeno il ticket che lo conserva è stato \
         creato ({}). Il connettore è andato avanti con i messaggi successivi: il messaggio si \
         trova nella casella PEC, da aprire con la webmail del gestore.</p>",
        esc(address),
        esc(&cut_at_line(reason, 2000).replace('\n', " ")),
        esc(&cut_at_line(error, 2000).replace('\n', " "))
    );
    alert_draft(
        address,
        format!("Connettore PEC: messaggio UID {uid} non importato dalla casella {address}"),
        html,
    )
}

/// A ticket for a message over the size limit, from its headers only (the message is not read
/// whole; it stays in the mailbox). The sender, when its address is usable, is the requester,
/// with the account's tag, so a reply still leaves as PEC.
pub fn too_large_ticket(
    header: &[u8],
    size: u64,
    limit: u64,
    mailbox: &str,
    marker: &str,
) -> TicketDraft {
    let get = |name: &str| header_value(header, name).filter(|v| !v.is_empty());
    let sender = get("Reply-To")
        .or_else(|| get("From"))
        .and_then(|v| address_in(&v))
        .filter(|a| usable_email(a) && !a.eq_ignore_ascii_case(mailbox));
    let raw_subject = get("Subject").unwrap_or_default();
    let subject = pec::subject::strip_prefix(&raw_subject).trim().to_owned();
    let mut items = Vec::new();
    for (label, value) in [
        ("Mittente", get("Reply-To").or_else(|| get("From"))),
        ("Destinatari", get("To")),
        ("Oggetto", Some(raw_subject.clone())),
        ("Data", get("Date")),
        ("Message-ID", get("Message-ID")),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            items.push(format!(
                "<li>{label}: {}</li>",
                esc(&cut_at_line(&v, 1000).replace('\n', " "))
            ));
        }
    }
    let html = format!(
        "<p><b>PEC troppo grande per essere importata</b></p><p>Il messaggio è di {}, oltre il \
         limite di importazione della casella ({}): il connettore ne ha letto solo le \
         intestazioni. Il messaggio completo resta nella casella PEC: aprirlo con la webmail del \
         gestore.</p><ul>{}</ul>{}",
        human_size(size as usize),
        human_size(limit as usize),
        items.concat(),
        reference(marker)
    );
    let mut tags = vec![TAG.to_owned(), TOO_LARGE_TAG.to_owned()];
    let (requester_email, requester_name) = match sender {
        Some(s) => {
            tags.push(account_tag(mailbox));
            (s, None)
        }
        None => (mailbox.to_owned(), Some("Mittente sconosciuto".to_owned())),
    };
    TicketDraft {
        subject: if subject.is_empty() {
            "(senza oggetto)".to_owned()
        } else {
            cut_at_line(&subject, 250).replace('\n', " ")
        },
        requester_email,
        requester_name,
        html_body: html,
        public: false,
        files: vec![UploadFile {
            filename: "intestazioni.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            data: header.to_vec(),
        }],
        tags,
        note_html: None,
        note_essential: true,
        facts: Vec::new(),
    }
}

/// A message listed in the renumbering alert: its UID, arrival time and header section.
pub type Listed = (u32, Option<chrono::DateTime<chrono::Utc>>, Vec<u8>);

/// The alert of a renumbered mailbox: what happened, how many messages were read again and
/// which older ones were not imported again (listed by date and subject, capped).
pub fn renumbered_alert(
    account: &crate::domain::Account,
    old_uid_validity: u32,
    new_uid_validity: u32,
    cutoff: chrono::DateTime<chrono::Utc>,
    total: usize,
    skipped: usize,
    listed: &[Listed],
) -> TicketDraft {
    let address = account.address.as_str();
    let mut items = Vec::new();
    for (uid, arrived, header) in listed {
        let subject = header_value(header, "Subject").unwrap_or_else(|| "(senza oggetto)".into());
        let when = arrived
            .map(|t| t.format("%d/%m/%Y %H:%M").to_string())
            .unwrap_or_default();
        items.push(format!(
            "<li>{} — {} (UID {uid})</li>",
            esc(&when),
            esc(&cut_at_line(&subject, 200).replace('\n', " "))
        ));
    }
    if skipped > listed.len() {
        items.push(format!("<li>… e altri {}</li>", skipped - listed.len()));
    }
    let html = format!(
        "<p><b>La casella PEC {} è stata rinumerata dal gestore</b> (UIDVALIDITY da \
         {old_uid_validity} a {new_uid_validity}).</p><p>Il connettore ha riletto la casella \
         ({total} messaggi). I {skipped} messaggi arrivati prima del {} (ultima lettura riuscita, \
         con un margine) non sono stati importati di nuovo; i più recenti sono stati importati, \
         riconoscendo quelli già presenti in Zendesk. Se uno dei messaggi non importati manca in \
         Zendesk, aprirlo dalla webmail del gestore.</p><ul>{}</ul>",
        esc(address),
        cutoff.format("%d/%m/%Y %H:%M UTC"),
        items.concat()
    );
    alert_draft(
        address,
        format!("Connettore PEC: la casella {address} è stata rinumerata"),
        html,
    )
}

/// What agents read under a fact's ticket field (Zendesk's `agent_description`).
pub fn fact_description(fact: Fact) -> &'static str {
    match fact {
        Fact::Identificativo => {
            "Identificativo del messaggio PEC assegnato dal gestore (scritto dal PEC Connector)"
        }
        Fact::Data => "Data e ora di certificazione del messaggio PEC (scritto dal PEC Connector)",
        Fact::Gestore => "Gestore PEC che ha emesso la busta (scritto dal PEC Connector)",
        Fact::Firma => "Esito della verifica della firma del gestore (scritto dal PEC Connector)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use pec::build::{MailBuilder, PecBuilder, Provider, daticert_from_original};

    const MAILBOX: &str = "protocollo@pec.comune.test";

    fn original(text: &str) -> Vec<u8> {
        MailBuilder::new()
            .from(pec::build::Address::named(
                "Mario Rossi",
                "mario.rossi@pec.cittadino.test",
            ))
            .to(MAILBOX)
            .subject("Richiesta {{ticket.id}} accesso atti")
            .message_id("orig-1@client.test")
            .text(text)
            .attachment("domanda.pdf", "application/pdf", b"%PDF-1.4 domanda")
            .build()
    }

    fn provider_message(
        kind: Kind,
        original: &[u8],
        consegna: &[&str],
        errore: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut d = daticert_from_original(original);
        d.identificativo = Some("opec1.20261127.1@pec.sandbox.test".to_owned());
        d.gestore_emittente = Some("Gestore Sandbox S.p.A.".to_owned());
        d.data = DateTime::parse_from_rfc3339("2026-11-27T10:15:00+01:00").ok();
        d.consegna = consegna.iter().map(|c| (*c).to_owned()).collect();
        if let Some((e, esteso)) = errore {
            d.errore = e.to_owned();
            d.errore_esteso = Some(esteso.to_owned());
        }
        PecBuilder::new(
            kind,
            Provider::new("Gestore Sandbox S.p.A.", "pec.sandbox.test"),
            d,
        )
        .original(original)
        .build()
        .unwrap()
    }

    #[test]
    fn an_envelope_becomes_a_ticket_from_the_real_sender_with_evidence_and_facts() {
        let raw = provider_message(
            Kind::Envelope,
            &original("Buongiorno, chiedo {{ticket.requester.name}}"),
            &[],
            None,
        );
        let msg = PecMessage::parse(&raw).unwrap();
        let draft = new_ticket(msg, raw.clone(), MAILBOX, "pec:acc:1:7");
        let note = draft.note_html.clone().unwrap();
        assert!(draft.public);
        assert_eq!(draft.subject, "Richiesta {{ticket.id}} accesso atti");
        assert_eq!(draft.requester_email, "mario.rossi@pec.cittadino.test");
        assert_eq!(draft.requester_name.as_deref(), Some("Mario Rossi"));
        assert!(draft.html_body.contains("Buongiorno"));
        assert!(!draft.html_body.contains("{{"), "{}", draft.html_body);
        let names: Vec<&str> = draft.files.iter().map(|f| f.filename.as_str()).collect();
        assert_eq!(names, vec!["domanda.pdf", "messaggio-pec.eml"]);
        assert_eq!(
            draft.files[1].data, raw,
            "the signed original is attached byte for byte"
        );
        assert_eq!(
            draft.tags,
            vec![
                "pec_connector",
                "pec_connector_protocollopec.comune.test",
                "pec_messaggio",
                "pec_firma_non_valida"
            ]
        );
        assert!(note.contains("opec1.20261127.1@pec.sandbox.test"));
        assert!(note.contains("Gestore Sandbox S.p.A."));
        assert!(note.contains("27/11/2026 10:15:00 (+0100)"));
        assert!(note.contains("Firma: NON valida"));
        assert!(note.contains("pec:acc:1:7"));
    }

    #[test]
    fn a_body_over_the_comment_limit_is_cut_cleanly_and_attached_whole() {
        let line = "Questa è una riga di testo abbastanza lunga per riempire il corpo.\n";
        let text = line.repeat(COMMENT_LIMIT / line.len() + 100);
        let raw = provider_message(Kind::Envelope, &original(&text), &[], None);
        let draft = new_ticket(PecMessage::parse(&raw).unwrap(), raw.clone(), MAILBOX, "m");
        assert!(
            draft.html_body.len() <= COMMENT_LIMIT,
            "{}",
            draft.html_body.len()
        );
        assert!(draft.html_body.contains("Testo troncato"));
        let full = draft
            .files
            .iter()
            .find(|f| f.filename == "testo-completo.html")
            .unwrap();
        assert!(full.data.len() > text.len());
    }

    #[test]
    fn files_over_the_limit_are_listed_not_uploaded() {
        let mut too_big = Vec::new();
        let files = vec![
            UploadFile {
                filename: "small.pdf".into(),
                content_type: "application/pdf".into(),
                data: vec![0; 10],
            },
            UploadFile {
                filename: "huge <1>.zip".into(),
                content_type: "application/zip".into(),
                data: vec![0; 2048],
            },
        ];
        let kept = within_limit(files, 1024, &mut too_big);
        assert_eq!(kept.len(), 1);
        assert_eq!(too_big, vec!["huge &lt;1&gt;.zip (2.0 kB)"]);
    }

    #[test]
    fn receipts_become_italian_notes_with_the_receipt_attached() {
        let orig = original("testo");
        let raw = provider_message(
            Kind::Receipt(ReceiptKind::AvvenutaConsegna),
            &orig,
            &["mario.rossi@pec.cittadino.test"],
            None,
        );
        let msg = PecMessage::parse(&raw).unwrap();
        let note = receipt_note(&msg, raw.clone(), "pec:acc:1:9");
        assert!(!note.public);
        assert!(note.html_body.contains("Ricevuta di avvenuta consegna"));
        assert!(
            note.html_body
                .contains("consegnata a mario.rossi@pec.cittadino.test il 27/11/2026")
        );
        // The test messages carry a placeholder signature: flagged as not valid.
        assert_eq!(note.tags, vec!["pec_consegnata", "pec_firma_non_valida"]);
        assert!(note.html_body.contains("NON è valida"));
        assert_eq!(note.files[0].filename, "avvenuta-consegna.eml");
        assert_eq!(note.files[0].data, raw);

        let raw = provider_message(
            Kind::Receipt(ReceiptKind::ErroreConsegna),
            &orig,
            &["x@pec.altro.test"],
            Some(("no-dest", "5.1.1 - Gestore - indirizzo non valido")),
        );
        let note = receipt_note(&PecMessage::parse(&raw).unwrap(), raw.clone(), "m");
        assert!(
            note.html_body
                .contains("Mancata consegna a x@pec.altro.test")
        );
        assert!(
            note.html_body
                .contains("5.1.1 - Gestore - indirizzo non valido")
        );
        assert_eq!(
            note.tags,
            vec!["pec_mancata_consegna", "pec_firma_non_valida"]
        );
    }

    #[test]
    fn a_receipt_too_big_for_zendesk_is_named_in_its_note_not_dropped() {
        let raw = provider_message(
            Kind::Receipt(ReceiptKind::ErroreConsegna),
            &original("t"),
            &["x@pec.altro.test"],
            Some(("no-dest", "5.1.1 - indirizzo non valido")),
        );
        let msg = PecMessage::parse(&raw).unwrap();
        let mut huge = raw.clone();
        huge.resize(FILE_LIMIT + 1, b' ');
        let said = "La ricevuta errore-consegna.eml (50.0 MB) non è stata allegata: supera il \
                    limite di Zendesk di 50.0 MB per file. Resta nella casella PEC.";
        let note = receipt_note(&msg, huge.clone(), "m");
        assert!(note.files.is_empty());
        assert!(note.html_body.contains(said), "{}", note.html_body);
        let ticket = receipt_ticket(&msg, huge, MAILBOX, "m", false);
        assert!(ticket.files.is_empty());
        assert!(ticket.html_body.contains(said), "{}", ticket.html_body);
        // At the limit it still goes.
        let mut at_limit = raw;
        at_limit.resize(FILE_LIMIT, b' ');
        let note = receipt_note(&msg, at_limit, "m");
        assert_eq!(note.files.len(), 1);
        assert!(!note.html_body.contains("non è stata allegata"));
    }

    #[test]
    fn an_unmatched_receipt_opens_a_ticket_saying_so() {
        let raw = provider_message(
            Kind::Receipt(ReceiptKind::Accettazione),
            &original("t"),
            &[],
            None,
        );
        let draft = new_ticket(PecMessage::parse(&raw).unwrap(), raw.clone(), MAILBOX, "m");
        assert_eq!(draft.requester_email, "posta-certificata@pec.sandbox.test");
        assert!(
            !draft.public,
            "the first comment of a receipt ticket is an internal note"
        );
        assert!(draft.note_html.is_none());
        assert!(
            draft
                .html_body
                .contains("Non è stato trovato il messaggio inviato")
        );
        assert!(draft.html_body.contains("accettata dal gestore"));
        assert!(draft.tags.contains(&"pec_accettata".to_owned()));
    }

    #[test]
    fn an_unreadable_message_keeps_its_raw_bytes() {
        let raw = b"\xff\xfe garbage";
        let draft = unreadable_ticket(
            raw.to_vec(),
            "cannot read message: bad MIME <structure>",
            MAILBOX,
            "m",
        );
        assert_eq!(draft.files[0].data, raw);
        assert_eq!(draft.requester_email, MAILBOX);
        assert!(draft.tags.contains(&UNREADABLE_TAG.to_owned()));
        assert!(
            draft
                .note_html
                .unwrap()
                .contains("bad MIME &lt;structure&gt;")
        );
    }

    #[test]
    fn a_sender_zendesk_would_refuse_gives_way_to_the_mailbox() {
        let raw =
            b"From: MAILER-DAEMON@localhost\r\nSubject: Undelivered\r\n\r\nbounce\r\n".to_vec();
        let draft = new_ticket(PecMessage::parse(&raw).unwrap(), raw, MAILBOX, "m");
        assert_eq!(draft.requester_email, MAILBOX);
        assert_eq!(
            draft.requester_name.as_deref(),
            Some("Mittente sconosciuto")
        );
        assert!(
            draft
                .note_html
                .unwrap()
                .contains("Mittente: MAILER-DAEMON@localhost")
        );
    }
}
