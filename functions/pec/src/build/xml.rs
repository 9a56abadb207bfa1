//! `daticert.xml` as providers write it, and the daticert of an original message.

use super::*;

/// `daticert.xml` exactly as providers write it: UTF-8 declaration, no DOCTYPE, 4-space indent,
/// LF line endings, elements in DTD order (RT §7.3.3), `<ricevuta tipo="..." />` self-closing,
/// text escaped (`<msgid>` becomes `&lt;...&gt;`). Absent optional elements are left out.
pub fn daticert_xml(d: &Daticert) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let errore = if d.errore.is_empty() {
        "nessuno"
    } else {
        &d.errore
    };
    let _ = writeln!(
        x,
        "<postacert tipo=\"{}\" errore=\"{}\">",
        escape_html(&d.tipo),
        escape_html(errore)
    );
    x.push_str("    <intestazione>\n");
    element(
        &mut x,
        2,
        "mittente",
        d.mittente.as_deref().unwrap_or_default(),
    );
    for dest in &d.destinatari {
        let tipo = if dest.tipo.is_empty() {
            "certificato"
        } else {
            &dest.tipo
        };
        let _ = writeln!(
            x,
            "        <destinatari tipo=\"{}\">{}</destinatari>",
            escape_html(tipo),
            escape_html(&dest.address)
        );
    }
    element(
        &mut x,
        2,
        "risposte",
        d.risposte.as_deref().unwrap_or_default(),
    );
    if let Some(oggetto) = &d.oggetto {
        element(&mut x, 2, "oggetto", oggetto);
    }
    x.push_str("    </intestazione>\n    <dati>\n");
    if let Some(gestore) = &d.gestore_emittente {
        element(&mut x, 2, "gestore-emittente", gestore);
    }
    if let Some(data) = d.data {
        let _ = writeln!(x, "        <data zona=\"{}\">", data.format("%z"));
        element(&mut x, 3, "giorno", &data.format("%d/%m/%Y").to_string());
        element(&mut x, 3, "ora", &data.format("%H:%M:%S").to_string());
        x.push_str("        </data>\n");
    }
    if let Some(id) = &d.identificativo {
        element(&mut x, 2, "identificativo", id);
    }
    if let Some(msgid) = &d.msgid {
        element(&mut x, 2, "msgid", msgid);
    }
    if let Some(ricevuta) = &d.ricevuta {
        let _ = writeln!(x, "        <ricevuta tipo=\"{}\" />", escape_html(ricevuta));
    }
    for c in &d.consegna {
        element(&mut x, 2, "consegna", c);
    }
    for r in &d.ricezione {
        element(&mut x, 2, "ricezione", r);
    }
    if let Some(e) = &d.errore_esteso {
        element(&mut x, 2, "errore-esteso", e);
    }
    x.push_str("    </dati>\n</postacert>\n");
    x
}

pub(super) fn element(x: &mut String, depth: usize, name: &str, text: &str) {
    let _ = writeln!(
        x,
        "{:width$}<{name}>{}</{name}>",
        "",
        escape_html(text),
        width = depth * 4
    );
}

/// The certification facts a provider reads from an original message: `mittente` (From),
/// `destinatari` (To and Cc, all `certificato`), `risposte` (Reply-To, else From), `oggetto`,
/// `msgid` (the client Message-ID, with angle brackets) and `ricevuta` (`X-TipoRicevuta`).
/// The caller fills in `tipo`, `data`, `identificativo` and the receipt-specific elements.
pub fn daticert_from_original(raw: &[u8]) -> Daticert {
    let mut d = Daticert {
        errore: "nessuno".to_owned(),
        ..Daticert::default()
    };
    let Ok((headers, _)) = mailparse::parse_headers(raw) else {
        return d;
    };
    let first = |name: &str| -> Vec<String> {
        headers
            .get_all_headers(name)
            .iter()
            .filter_map(|h| mailparse::addrparse_header(h).ok())
            .flat_map(|list| list.into_inner())
            .flat_map(|a| match a {
                mailparse::MailAddr::Single(s) => vec![s.addr],
                mailparse::MailAddr::Group(g) => g.addrs.into_iter().map(|s| s.addr).collect(),
            })
            .collect()
    };
    d.mittente = first("From").into_iter().next();
    d.destinatari = first("To")
        .into_iter()
        .chain(first("Cc"))
        .map(|address| Destinatario {
            address,
            tipo: "certificato".to_owned(),
        })
        .collect();
    d.risposte = first("Reply-To")
        .into_iter()
        .next()
        .or_else(|| d.mittente.clone());
    d.oggetto = headers
        .get_first_value("Subject")
        .map(|s| s.trim().to_owned());
    d.msgid = headers
        .get_first_value("Message-ID")
        .map(|id| format!("<{}>", normalize_msgid(&id)));
    d.ricevuta = headers
        .get_first_value("X-TipoRicevuta")
        .map(|t| crate::TipoRicevuta::from_value(&t).as_str().to_owned());
    d
}
