// PEC Connector admin console: a page over the JSON admin API, nothing more. The admin token is
// typed once per browser session, kept in sessionStorage and sent only in the Authorization
// header. No inline code, no other origin (see the Content-Security-Policy of /admin).
"use strict";

const I18N = {
  it: {
    "app.title": "PEC Connector — amministrazione",
    "lang.switch": "English",
    "login.title": "Accesso",
    "login.token": "Token amministratore",
    "login.help": "Si trova nel file admin-token della cartella dati (pec-connector serve) o nel segreto admin-token (AWS). Resta solo in questa scheda del browser.",
    "login.submit": "Accedi",
    "login.logout": "Esci",
    "login.wrong": "Token errato: controllare il token amministratore e riprovare.",
    "login.missing": "Inserire il token amministratore.",
    "accounts.title": "Caselle PEC",
    "accounts.empty": "Nessuna casella PEC registrata.",
    "accounts.refresh": "Aggiorna",
    "col.address": "Indirizzo PEC",
    "col.provider": "Gestore",
    "col.instance": "Istanza Zendesk",
    "col.state": "Stato",
    "col.last_poll": "Ultima lettura",
    "col.last_success": "Ultima lettura riuscita",
    "col.counts": "Ticket / ricevute / illeggibili",
    "col.password": "Età password",
    "col.actions": "Azioni",
    "state.ok": "OK",
    "state.paused": "In pausa",
    "state.problem_since": "Problema dal {since}",
    "problem.login_refused": "Il gestore ha rifiutato la password. Le password per i programmi di posta scadono (Aruba: ogni 4 mesi) e con la verifica in due passaggi serve una password dedicata; in alcuni casi l'accesso da programmi di posta va abilitato nella webmail. Generare una nuova password e aggiornare l'account nel connettore.",
    "problem.tls": "Il certificato del server non è stato accettato o la connessione TLS non è riuscita. Verificare il nome del server IMAP configurato per l'account.",
    "problem.unreachable": "Il server IMAP non risponde da un po'. Verificare nome e porta del server; se il problema persiste, il gestore potrebbe bloccare l'indirizzo IP del connettore.",
    "problem.credentials": "La password dell'account non è disponibile nel connettore. Registrare di nuovo la password dell'account.",
    "password.age": "{days} giorni",
    "password.expires": "scade probabilmente il {date}",
    "password.warn": "Da rinnovare presto",
    "never": "mai",
    "default_instance": "predefinita",
    "other_provider": "Altro",
    "manage": "Gestisci",
    "register.title": "Registra una casella PEC",
    "register.preset": "Gestore PEC",
    "register.preset_help": "Compila server e porte; restano modificabili.",
    "field.address": "Nome utente (indirizzo PEC)",
    "field.password": "Password",
    "field.password_help": "Con la verifica in due passaggi usare una password per programmi di posta.",
    "field.imap_host": "Server posta in arrivo (IMAP)",
    "field.imap_port": "Porta",
    "field.smtp_host": "Server posta in uscita (SMTP)",
    "field.smtp_port": "Porta",
    "field.subject_template": "Oggetto PEC in outbound",
    "field.message_template": "Testo PEC in outbound",
    "field.template_help": "Segnaposto Zendesk ammessi, ad esempio {{ticket.title}}, {{ticket.id}}, {{ticket.latest_comment_html}}, {{ticket.requester.name}}.",
    "field.poll_interval_minutes": "Intervallo di lettura (minuti, 1–60)",
    "field.receipt_mode": "Ricevute",
    "receipt.note": "Nota interna sul ticket",
    "receipt.ticket": "Un ticket per ricevuta",
    "receipt.both": "Entrambi",
    "field.outbound_attachments": "Allegati in uscita",
    "attachments.zendesk": "Come l'impostazione di Zendesk",
    "attachments.on": "Sempre",
    "attachments.off": "Mai",
    "field.guard_notifications": "Le notifiche standard di Zendesk non scrivono ai mittenti PEC",
    "field.zendesk_instance": "Istanza Zendesk",
    "register.submit": "Verifica e registra",
    "register.checking": "Verifica di IMAP e SMTP in corso…",
    "register.done": "Casella {address} registrata. Creato in Zendesk:",
    "zd.reply_trigger": "Trigger «Reply by PEC Connector [{address}]»",
    "zd.public_reply_trigger": "Trigger delle risposte pubbliche",
    "zd.trigger_category": "Categoria di trigger «PEC Connector»",
    "zd.webhook": "Webhook del PEC Connector",
    "zd.open": "apri in Zendesk",
    "err.password": "Il gestore ha rifiutato l'accesso con questa password. Con la verifica in due passaggi serve una password per programmi di posta (Aruba: «password per programmi di posta», scade ogni 4 mesi); in alcuni casi l'accesso da programmi di posta va abilitato nella webmail.",
    "err.imap_host": "Il server posta in arrivo non è raggiungibile o non accetta la connessione sicura: controllare nome e porta (IMAPS, di solito 993).",
    "err.smtp_host": "Il server posta in uscita non è raggiungibile o ha rifiutato: controllare nome e porta (SMTPS, di solito 465).",
    "err.smtp_blocked": "Il gestore blocca l'indirizzo IP del connettore (5.7.1): non dipende dalla password. Chiedere al gestore di abilitare l'indirizzo IP del connettore.",
    "err.address": "Indirizzo PEC non valido.",
    "err.required": "Campo obbligatorio.",
    "err.detail": "Dettaglio: {message}",
    "err.network": "Il connettore non risponde. Riprovare tra poco.",
    "err.generic": "Operazione non riuscita: {message}",
    "account.title": "Casella {address}",
    "account.close": "Chiudi",
    "account.settings": "Impostazioni",
    "account.save": "Salva",
    "account.saved": "Impostazioni salvate.",
    "account.rotate": "Nuova password",
    "account.rotate_submit": "Cambia password",
    "account.rotated": "Password cambiata e verificata.",
    "account.pause": "Metti in pausa",
    "account.resume": "Riprendi",
    "account.paused": "Casella in pausa.",
    "account.resumed": "Casella riattivata.",
    "account.poll": "Leggi ora",
    "account.polling": "Lettura in corso…",
    "account.poll_outcome": "Lettura completata: {tickets} ticket nuovi, {comments} commenti, {receipts} ricevute, {unreadable} illeggibili.",
    "account.poll_busy": "Un'altra lettura è in corso: riprovare tra poco.",
    "account.delete": "Elimina la casella",
    "account.delete_confirm": "Per confermare, scrivere l'indirizzo {address}",
    "account.delete_submit": "Elimina definitivamente",
    "account.deleted": "Casella {address} eliminata (i ticket restano in Zendesk).",
    "account.delete_mismatch": "L'indirizzo scritto non corrisponde.",
    "activity.title": "Attività degli ultimi 30 giorni",
    "activity.received": "PEC ricevute",
    "activity.sent": "PEC inviate",
    "activity.receipts": "Ricevute",
    "activity.failures": "Errori",
    "activity.total": "{label}: {total} in 30 giorni",
    "instances.title": "Istanze Zendesk",
    "instances.empty": "Solo l'istanza predefinita.",
    "instances.id": "Nome breve",
    "instances.subdomain": "Sottodominio (acme per acme.zendesk.com)",
    "instances.url": "Oppure URL",
    "instances.email": "E-mail dell'agente API",
    "instances.api_token": "Token API",
    "instances.add": "Aggiungi istanza",
    "instances.added": "Istanza {id} aggiunta.",
    "instances.remove": "Rimuovi",
    "instances.removed": "Istanza {id} rimossa."
  },
  en: {
    "app.title": "PEC Connector — administration",
    "lang.switch": "Italiano",
    "login.title": "Sign in",
    "login.token": "Admin token",
    "login.help": "It is in the admin-token file of the data directory (pec-connector serve) or in the admin-token secret (AWS). It stays in this browser tab only.",
    "login.submit": "Sign in",
    "login.logout": "Sign out",
    "login.wrong": "Wrong token: check the admin token and try again.",
    "login.missing": "Type the admin token.",
    "accounts.title": "PEC mailboxes",
    "accounts.empty": "No PEC mailbox registered.",
    "accounts.refresh": "Refresh",
    "col.address": "PEC address",
    "col.provider": "Provider",
    "col.instance": "Zendesk instance",
    "col.state": "State",
    "col.last_poll": "Last poll",
    "col.last_success": "Last successful poll",
    "col.counts": "Tickets / receipts / unreadable",
    "col.password": "Password age",
    "col.actions": "Actions",
    "state.ok": "OK",
    "state.paused": "Paused",
    "state.problem_since": "Problem since {since}",
    "problem.login_refused": "The provider refused the password. Passwords for mail programs expire (Aruba: every 4 months) and two-step verification needs a dedicated password; some providers require enabling access from mail programs in the webmail. Create a new password and update the account in the connector.",
    "problem.tls": "The server's certificate was not accepted or TLS failed. Check the IMAP server name of the account.",
    "problem.unreachable": "The IMAP server has not answered for a while. Check the server name and port; if it goes on, the provider may be blocking the connector's IP address.",
    "problem.credentials": "The account's password is not available to the connector. Register the account's password again.",
    "password.age": "{days} days",
    "password.expires": "likely expires on {date}",
    "password.warn": "Renew soon",
    "never": "never",
    "default_instance": "default",
    "other_provider": "Other",
    "manage": "Manage",
    "register.title": "Register a PEC mailbox",
    "register.preset": "PEC provider",
    "register.preset_help": "Fills servers and ports; they stay editable.",
    "field.address": "User name (PEC address)",
    "field.password": "Password",
    "field.password_help": "With two-step verification use a password for mail programs.",
    "field.imap_host": "Incoming mail server (IMAP)",
    "field.imap_port": "Port",
    "field.smtp_host": "Outgoing mail server (SMTP)",
    "field.smtp_port": "Port",
    "field.subject_template": "Outbound PEC subject",
    "field.message_template": "Outbound PEC text",
    "field.template_help": "Zendesk placeholders allowed, e.g. {{ticket.title}}, {{ticket.id}}, {{ticket.latest_comment_html}}, {{ticket.requester.name}}.",
    "field.poll_interval_minutes": "Poll interval (minutes, 1–60)",
    "field.receipt_mode": "Receipts",
    "receipt.note": "Internal note on the ticket",
    "receipt.ticket": "One ticket per receipt",
    "receipt.both": "Both",
    "field.outbound_attachments": "Outbound attachments",
    "attachments.zendesk": "As Zendesk's setting",
    "attachments.on": "Always",
    "attachments.off": "Never",
    "field.guard_notifications": "Zendesk's standard notifications do not write to PEC requesters",
    "field.zendesk_instance": "Zendesk instance",
    "register.submit": "Check and register",
    "register.checking": "Checking IMAP and SMTP…",
    "register.done": "Mailbox {address} registered. Created in Zendesk:",
    "zd.reply_trigger": "Trigger \"Reply by PEC Connector [{address}]\"",
    "zd.public_reply_trigger": "Public replies trigger",
    "zd.trigger_category": "Trigger category \"PEC Connector\"",
    "zd.webhook": "PEC Connector webhook",
    "zd.open": "open in Zendesk",
    "err.password": "The provider refused this password. With two-step verification a password for mail programs is needed (Aruba: \"password per programmi di posta\", expires every 4 months); some providers require enabling access from mail programs in the webmail.",
    "err.imap_host": "The incoming mail server cannot be reached or refused the secure connection: check the name and port (IMAPS, usually 993).",
    "err.smtp_host": "The outgoing mail server cannot be reached or refused: check the name and port (SMTPS, usually 465).",
    "err.smtp_blocked": "The provider blocks the connector's IP address (5.7.1): not a password problem. Ask the provider to allow the connector's IP address.",
    "err.address": "Not a valid PEC address.",
    "err.required": "Required.",
    "err.detail": "Detail: {message}",
    "err.network": "The connector does not answer. Try again shortly.",
    "err.generic": "It did not work: {message}",
    "account.title": "Mailbox {address}",
    "account.close": "Close",
    "account.settings": "Settings",
    "account.save": "Save",
    "account.saved": "Settings saved.",
    "account.rotate": "New password",
    "account.rotate_submit": "Change password",
    "account.rotated": "Password changed and checked.",
    "account.pause": "Pause",
    "account.resume": "Resume",
    "account.paused": "Mailbox paused.",
    "account.resumed": "Mailbox resumed.",
    "account.poll": "Poll now",
    "account.polling": "Polling…",
    "account.poll_outcome": "Poll done: {tickets} new tickets, {comments} comments, {receipts} receipts, {unreadable} unreadable.",
    "account.poll_busy": "Another poll is running: try again shortly.",
    "account.delete": "Delete the mailbox",
    "account.delete_confirm": "To confirm, type the address {address}",
    "account.delete_submit": "Delete for good",
    "account.deleted": "Mailbox {address} deleted (the tickets stay in Zendesk).",
    "account.delete_mismatch": "The typed address does not match.",
    "activity.title": "Activity of the last 30 days",
    "activity.received": "PEC received",
    "activity.sent": "PEC sent",
    "activity.receipts": "Receipts",
    "activity.failures": "Failures",
    "activity.total": "{label}: {total} in 30 days",
    "instances.title": "Zendesk instances",
    "instances.empty": "Only the default instance.",
    "instances.id": "Short name",
    "instances.subdomain": "Subdomain (acme for acme.zendesk.com)",
    "instances.url": "Or URL",
    "instances.email": "API agent e-mail",
    "instances.api_token": "API token",
    "instances.add": "Add instance",
    "instances.added": "Instance {id} added.",
    "instances.remove": "Remove",
    "instances.removed": "Instance {id} removed."
  }
};

const TOKEN_KEY = "pecConnectorAdminToken";
const LANG_KEY = "pecConnectorLang";
const PASSWORD_WARN_DAYS = 100;
const PASSWORD_LIFE_MONTHS = 4;

const state = {
  lang: localStorage.getItem(LANG_KEY) === "en" ? "en" : "it",
  accounts: [],
  providers: [],
  instances: [],
  open: null,
  created: null
};

function t(key, vars) {
  let text = I18N[state.lang][key];
  if (text === undefined) text = I18N.it[key] || key;
  if (vars) {
    text = text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }
  return text;
}

// ----- DOM helpers -----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function $(id) {
  return document.getElementById(id);
}

function say(text, kind) {
  const status = $("status");
  status.textContent = text || "";
  status.className = "status" + (kind ? " " + kind : "");
}

function fmtDate(iso) {
  if (!iso) return t("never");
  const d = new Date(iso);
  return d.toLocaleString(state.lang === "it" ? "it-IT" : "en-GB", {
    dateStyle: "short",
    timeStyle: "short"
  });
}

function fmtDay(d) {
  return d.toLocaleDateString(state.lang === "it" ? "it-IT" : "en-GB", { dateStyle: "medium" });
}

// A field: label, input, help and the place for its error, all linked for assistive technology.
function field(form, name, input, help) {
  const id = form + "-" + name;
  input.id = id;
  input.name = name;
  const described = [id + "-error"];
  if (help) described.unshift(id + "-help");
  input.setAttribute("aria-describedby", described.join(" "));
  return el("div", { class: "field" },
    el("label", { for: id, text: t("field." + name) === "field." + name ? name : t("field." + name) }),
    input,
    help ? el("small", { id: id + "-help", text: help }) : null,
    el("span", { id: id + "-error", class: "error", "data-error-for": name }));
}

function labelled(form, name, label, input, help) {
  const node = field(form, name, input, help);
  node.querySelector("label").textContent = label;
  return node;
}

function clearErrors(root) {
  for (const span of root.querySelectorAll(".error")) span.textContent = "";
  for (const input of root.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showFieldError(root, fieldName, text, detail) {
  const span = root.querySelector('[data-error-for="' + fieldName + '"]');
  if (!span) return false;
  span.textContent = text;
  if (detail) span.append(el("small", { class: "detail", text: detail }));
  const input = root.querySelector('[name="' + fieldName + '"]');
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  return true;
}

// The Italian (or English) explanation of a refusal of the admin API, by the field at fault.
function explain(body) {
  const message = (body && body.error) || "";
  const fieldName = body && body.field;
  if (fieldName === "smtp_host" && /5\.7\.1/.test(message)) return t("err.smtp_blocked");
  if (fieldName && I18N.it["err." + fieldName]) return t("err." + fieldName);
  return "";
}

function showRefusal(root, body) {
  const message = (body && body.error) || "";
  const explanation = explain(body);
  const text = explanation || t("err.generic", { message });
  const detail = explanation ? t("err.detail", { message }) : "";
  if (!(body && body.field && showFieldError(root, body.field, text, detail))) say(text + (detail ? " " + detail : ""), "bad");
}

// ----- the admin API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body, token) {
  const headers = { Authorization: "Bearer " + (token || sessionStorage.getItem(TOKEN_KEY) || "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let answer;
  try {
    answer = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer"
    });
  } catch (e) {
    throw new ApiError(0, { error: t("err.network") });
  }
  const text = await answer.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (e) {
      json = { error: text.slice(0, 200) };
    }
  }
  if (answer.status === 401 && !token) {
    signOut();
    showFieldError(document, "token", t("login.wrong"));
  }
  if (!answer.ok) throw new ApiError(answer.status, json);
  return json;
}

function failed(e, root) {
  if (e instanceof ApiError) {
    if (e.status === 0) say(t("err.network"), "bad");
    else showRefusal(root || document, e.body);
  } else {
    say(t("err.generic", { message: String(e) }), "bad");
  }
}

// ----- sign in ---------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = $("login-form");
  clearErrors(form);
  const token = $("token").value.trim();
  if (!token) {
    showFieldError(form, "token", t("login.missing"));
    return;
  }
  try {
    await api("GET", "accounts", undefined, token);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) showFieldError(form, "token", t("login.wrong"));
    else failed(e, form);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  await enter();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  $("app").hidden = true;
  $("app").replaceChildren();
  $("login").hidden = false;
  $("logout").hidden = true;
  state.open = null;
  state.created = null;
}

async function enter() {
  $("login").hidden = true;
  $("logout").hidden = false;
  $("app").hidden = false;
  await load();
}

async function load() {
  try {
    const [accounts, providers, instances] = await Promise.all([
      api("GET", "accounts"),
      api("GET", "providers"),
      api("GET", "zendesk-instances")
    ]);
    state.accounts = accounts.accounts;
    state.providers = providers.providers;
    state.instances = instances.zendesk_instances;
  } catch (e) {
    failed(e);
    return;
  }
  render();
}

// ----- rendering -------------------------------------------------------------------------------

function applyStatic() {
  document.documentElement.lang = state.lang;
  document.title = t("app.title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  const lang = $("lang");
  lang.textContent = t("lang.switch");
  lang.lang = state.lang === "it" ? "en" : "it";
}

function render() {
  applyStatic();
  if ($("app").hidden) return;
  const open = state.accounts.find((a) => a.id === state.open);
  const sections = [accountsSection(), open ? accountSection(open) : null, registerSection(), instancesSection()];
  $("app").replaceChildren(...sections.filter(Boolean));
}

function providerLabel(name) {
  const p = state.providers.find((x) => x.name === name);
  return p ? p.label : t("other_provider");
}

function passwordCell(status) {
  const label = t("col.password");
  if (status.password_set_at === null || status.password_set_at === undefined) return el("td", { "data-label": label, text: "—" });
  const days = status.password_age_days || 0;
  const expiry = new Date(status.password_set_at);
  expiry.setMonth(expiry.getMonth() + PASSWORD_LIFE_MONTHS);
  const warn = days >= PASSWORD_WARN_DAYS;
  return el("td", { "data-label": label, class: warn ? "warn" : "" },
    t("password.age", { days }),
    el("br"),
    el("small", { text: t("password.expires", { date: fmtDay(expiry) }) }),
    warn ? el("strong", { class: "badge", text: t("password.warn") }) : null);
}

function stateCell(account) {
  const s = account.status;
  if (s.mailbox === "ok") {
    return el("td", { "data-label": t("col.state") }, el("span", { class: "badge " + (account.enabled ? "good" : "muted"),
      text: account.enabled ? t("state.ok") : t("state.paused") }));
  }
  return el("td", { "data-label": t("col.state"), class: "problem" },
    el("span", { class: "badge bad", text: t("state.problem_since", { since: fmtDate(s.problem_since) }) }),
    el("p", { text: t("problem." + s.mailbox) }),
    s.last_error ? el("small", { text: t("err.detail", { message: s.last_error }) }) : null);
}

function accountsSection() {
  const rows = state.accounts.map((a) => {
    const c = a.status.counts;
    return el("tr", { "data-account": a.id },
      el("th", { scope: "row" }, a.address),
      el("td", { "data-label": t("col.provider"), text: providerLabel(a.provider) }),
      el("td", { "data-label": t("col.instance"), text: a.zendesk_instance || t("default_instance") }),
      stateCell(a),
      el("td", { "data-label": t("col.last_poll"), text: fmtDate(a.status.last_poll_at) }),
      el("td", { "data-label": t("col.last_success"), text: fmtDate(a.status.last_success_at) }),
      el("td", { "data-label": t("col.counts"), class: "counts",
        text: (c.tickets_created + c.comments_added) + " / " + c.receipts_noted + " / " + c.unreadable }),
      passwordCell(a.status),
      el("td", { class: "row-actions" }, el("button", { type: "button", class: "manage", "aria-label": t("manage") + " " + a.address,
        onclick: () => { state.open = a.id; render(); const h = $("account-title"); if (h) h.focus(); } },
      t("manage"))));
  });
  const heads = ["address", "provider", "instance", "state", "last_poll", "last_success", "counts", "password", "actions"];
  return el("section", { id: "accounts", "aria-labelledby": "accounts-title" },
    el("div", { class: "section-head" },
      el("h2", { id: "accounts-title", text: t("accounts.title") }),
      el("button", { type: "button", id: "refresh", onclick: load }, t("accounts.refresh"))),
    state.accounts.length === 0
      ? el("p", { text: t("accounts.empty") })
      : el("div", { class: "table-wrap" },
        el("table", {},
          el("thead", {}, el("tr", {}, heads.map((h) => el("th", { scope: "col", text: t("col." + h) })))),
          el("tbody", {}, rows))));
}

function select(options, value) {
  const node = el("select", {});
  for (const [v, label] of options) node.append(el("option", { value: v, selected: v === value, text: label }));
  return node;
}

function settingsFields(form, a) {
  return [
    field(form, "subject_template", el("input", { type: "text", value: a ? a.subject_template : "{{ticket.title}}" })),
    field(form, "message_template",
      el("textarea", { rows: "3" }, a ? a.message_template : "{{ticket.latest_comment_html}}"),
      t("field.template_help")),
    field(form, "poll_interval_minutes",
      el("input", { type: "number", min: "1", max: "60", value: a ? String(a.poll_interval_minutes) : "2" })),
    field(form, "receipt_mode", select(["note", "ticket", "both"].map((m) => [m, t("receipt." + m)]),
      a ? a.receipt_mode : "note")),
    field(form, "outbound_attachments", select(["zendesk", "on", "off"].map((m) => [m, t("attachments." + m)]),
      a ? a.outbound_attachments : "zendesk")),
    el("div", { class: "field check" },
      el("input", { type: "checkbox", id: form + "-guard_notifications", name: "guard_notifications",
        onchange: (event) => { event.target.dataset.touched = "1"; } }),
      el("label", { for: form + "-guard_notifications", text: t("field.guard_notifications") }))
  ];
}

// The settings of a form; the notification guard only when it was changed (the account view
// does not say whether it is on, and saving other settings must not turn it off).
function readSettings(form) {
  const v = (name) => form.elements[name].value;
  const settings = {
    subject_template: v("subject_template"),
    message_template: v("message_template"),
    poll_interval_minutes: Number(v("poll_interval_minutes")),
    receipt_mode: v("receipt_mode"),
    outbound_attachments: v("outbound_attachments")
  };
  const guard = form.elements.guard_notifications;
  if (guard.dataset.touched === "1") settings.guard_notifications = guard.checked;
  return settings;
}

function registerSection() {
  const f = "reg";
  const presetSelect = select([["", t("other_provider")]].concat(state.providers.map((p) => [p.name, p.label])), "");
  const form = el("form", { id: "register-form", novalidate: true });
  presetSelect.addEventListener("change", () => {
    const p = state.providers.find((x) => x.name === presetSelect.value);
    if (!p) return;
    form.elements.imap_host.value = p.imap_host;
    form.elements.imap_port.value = String(p.imap_port);
    form.elements.smtp_host.value = p.smtp_host;
    form.elements.smtp_port.value = String(p.smtp_port);
  });
  const instanceOptions = [["", t("default_instance")]].concat(state.instances.map((i) => [i.id, i.id]));
  form.append(
    labelled(f, "provider", t("register.preset"), presetSelect, t("register.preset_help")),
    field(f, "address", el("input", { type: "email", autocomplete: "off", required: true })),
    field(f, "password", el("input", { type: "password", autocomplete: "new-password", required: true }),
      t("field.password_help")),
    el("div", { class: "pair" },
      field(f, "imap_host", el("input", { type: "text", required: true })),
      field(f, "imap_port", el("input", { type: "number", min: "1", max: "65535", value: "993" }))),
    el("div", { class: "pair" },
      field(f, "smtp_host", el("input", { type: "text", required: true })),
      field(f, "smtp_port", el("input", { type: "number", min: "1", max: "65535", value: "465" }))),
    ...settingsFields(f, null),
    state.instances.length ? field(f, "zendesk_instance", select(instanceOptions, "")) : null,
    el("button", { type: "submit", text: t("register.submit") }));
  form.addEventListener("submit", register);
  return el("section", { id: "register", "aria-labelledby": "register-title" },
    el("h2", { id: "register-title", text: t("register.title") }),
    state.created ? createdPanel(state.created) : null,
    form);
}

function createdPanel(account) {
  const links = account.zendesk_links || {};
  const item = (key, href) => el("li", {},
    t(key, { address: account.address }), " ",
    href ? el("a", { href, target: "_blank", rel: "noopener noreferrer", text: t("zd.open") }) : null);
  return el("div", { id: "created", class: "notice", role: "region", "aria-label": t("register.done", { address: account.address }) },
    el("p", { text: t("register.done", { address: account.address }) }),
    el("ul", {},
      item("zd.reply_trigger", links.reply_trigger),
      item("zd.public_reply_trigger", links.public_reply_trigger),
      item("zd.trigger_category", links.trigger_category),
      item("zd.webhook", links.webhook)));
}

async function register(event) {
  event.preventDefault();
  const form = event.target;
  clearErrors(form);
  const v = (name) => form.elements[name].value.trim();
  for (const name of ["address", "password", "imap_host", "smtp_host"]) {
    if (!v(name)) {
      showFieldError(form, name, t("err.required"));
      return;
    }
  }
  const body = Object.assign({
    address: v("address"),
    password: form.elements.password.value,
    imap_host: v("imap_host"),
    imap_port: Number(v("imap_port")),
    smtp_host: v("smtp_host"),
    smtp_port: Number(v("smtp_port"))
  }, readSettings(form));
  if (form.elements.zendesk_instance && v("zendesk_instance")) body.zendesk_instance = v("zendesk_instance");
  say(t("register.checking"));
  try {
    const account = await api("POST", "accounts", body);
    state.created = account;
    state.open = null;
    form.reset();
    say("");
    await load();
    const created = $("created");
    if (created) created.scrollIntoView();
  } catch (e) {
    say("");
    failed(e, form);
  }
}

function activityChart(account) {
  const days = 30;
  const today = new Date();
  const key = (d) => d.toISOString().slice(0, 10);
  const byDay = new Map((account.status.activity || []).map((d) => [d.day, d]));
  const series = ["received", "sent", "receipts", "failures"];
  const width = 300;
  const height = 40;
  const bar = width / days;
  const figure = el("figure", { class: "activity" });
  figure.append(el("figcaption", { text: t("activity.title") }));
  for (const name of series) {
    const values = [];
    for (let i = days - 1; i >= 0; i--) {
      const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
      const entry = byDay.get(key(d));
      values.push(entry ? entry[name] || 0 : 0);
    }
    const max = Math.max(1, ...values);
    const total = values.reduce((a, b) => a + b, 0);
    const label = t("activity.total", { label: t("activity." + name), total });
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": label, class: "series " + name });
    chart.append(svg("line", { x1: "0", y1: String(height - 0.5), x2: String(width), y2: String(height - 0.5), class: "axis" }));
    values.forEach((value, i) => {
      if (!value) return;
      const h = Math.max(2, (value / max) * (height - 2));
      const rect = svg("rect", { x: String(i * bar + 1), y: String(height - h), width: String(bar - 2), height: String(h) });
      const title = svg("title", {});
      title.textContent = value;
      rect.append(title);
      chart.append(rect);
    });
    figure.append(el("div", { class: "series-row" }, el("span", { class: "series-label " + name, text: label }), chart));
  }
  return figure;
}

function accountSection(a) {
  const f = "acc";
  const settings = el("form", { id: "settings-form", novalidate: true }, ...settingsFields(f, a),
    el("button", { type: "submit", text: t("account.save") }));
  settings.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(settings);
    await change(a, readSettings(settings), t("account.saved"), settings);
  });

  const rotate = el("form", { id: "rotate-form", novalidate: true },
    labelled("rot", "password", t("account.rotate"),
      el("input", { type: "password", autocomplete: "new-password", required: true }), t("field.password_help")),
    el("button", { type: "submit", text: t("account.rotate_submit") }));
  rotate.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(rotate);
    const password = rotate.elements.password.value;
    if (!password) {
      showFieldError(rotate, "password", t("err.required"));
      return;
    }
    await change(a, { password }, t("account.rotated"), rotate);
  });

  const pollOutcome = el("p", { id: "poll-outcome", role: "status", "aria-live": "polite" });
  const pollButton = el("button", { type: "button", id: "poll-now", text: t("account.poll") });
  pollButton.addEventListener("click", async () => {
    pollOutcome.textContent = t("account.polling");
    try {
      const o = await api("POST", "accounts/" + encodeURIComponent(a.id) + "/poll");
      const text = o.busy ? t("account.poll_busy") : t("account.poll_outcome", {
        tickets: o.tickets_created, comments: o.comments_added, receipts: o.receipts_noted, unreadable: o.unreadable
      });
      await load();
      const again = $("poll-outcome");
      if (again) again.textContent = text;
    } catch (e) {
      pollOutcome.textContent = "";
      failed(e);
    }
  });
  const pause = el("button", { type: "button", id: "pause", text: a.enabled ? t("account.pause") : t("account.resume") });
  pause.addEventListener("click", () =>
    change(a, { enabled: !a.enabled }, a.enabled ? t("account.paused") : t("account.resumed")));

  const confirmInput = el("input", { type: "text", autocomplete: "off" });
  const del = el("form", { id: "delete-form", novalidate: true },
    labelled("del", "confirm", t("account.delete_confirm", { address: a.address }), confirmInput),
    el("button", { type: "submit", class: "danger", text: t("account.delete_submit") }));
  del.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(del);
    if (confirmInput.value.trim() !== a.address) {
      showFieldError(del, "confirm", t("account.delete_mismatch"));
      return;
    }
    try {
      await api("DELETE", "accounts/" + encodeURIComponent(a.id));
      state.open = null;
      if (state.created && state.created.id === a.id) state.created = null;
      await load();
      say(t("account.deleted", { address: a.address }), "good");
    } catch (e) {
      failed(e, del);
    }
  });

  const close = el("button", { type: "button", class: "link", text: t("account.close") });
  close.addEventListener("click", () => { state.open = null; render(); });
  return el("section", { id: "account", "aria-labelledby": "account-title", "data-account": a.id },
    el("div", { class: "section-head" },
      el("h2", { id: "account-title", tabindex: "-1", text: t("account.title", { address: a.address }) }), close),
    el("div", { class: "actions" }, pollButton, pause),
    pollOutcome,
    activityChart(a),
    el("h3", { text: t("account.settings") }), settings,
    el("h3", { text: t("account.rotate") }), rotate,
    el("h3", { text: t("account.delete") }), del);
}

async function change(a, body, done, root) {
  try {
    await api("PATCH", "accounts/" + encodeURIComponent(a.id), body);
    await load();
    say(done, "good");
  } catch (e) {
    failed(e, root);
  }
}

function instancesSection() {
  const f = "zd";
  const rows = state.instances.map((i) => el("li", {},
    el("span", { text: i.id + " — " + (i.url || i.subdomain || "") }), " ",
    el("button", { type: "button", class: "link", "aria-label": t("instances.remove") + " " + i.id,
      onclick: async () => {
        try {
          await api("DELETE", "zendesk-instances/" + encodeURIComponent(i.id));
          await load();
          say(t("instances.removed", { id: i.id }), "good");
        } catch (e) {
          failed(e);
        }
      } }, t("instances.remove"))));
  const form = el("form", { id: "instance-form", novalidate: true },
    labelled(f, "id", t("instances.id"), el("input", { type: "text", required: true })),
    labelled(f, "subdomain", t("instances.subdomain"), el("input", { type: "text" })),
    labelled(f, "url", t("instances.url"), el("input", { type: "url" })),
    labelled(f, "email", t("instances.email"), el("input", { type: "email" })),
    labelled(f, "api_token", t("instances.api_token"), el("input", { type: "password", autocomplete: "off" })),
    el("button", { type: "submit", text: t("instances.add") }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const body = {};
    for (const name of ["id", "subdomain", "url", "email", "api_token"]) {
      const value = form.elements[name].value.trim();
      if (value) body[name] = value;
    }
    try {
      await api("POST", "zendesk-instances", body);
      await load();
      say(t("instances.added", { id: body.id }), "good");
    } catch (e) {
      failed(e, form);
    }
  });
  return el("section", { id: "instances", "aria-labelledby": "instances-title" },
    el("h2", { id: "instances-title", text: t("instances.title") }),
    rows.length ? el("ul", { class: "instances" }, rows) : el("p", { text: t("instances.empty") }),
    form);
}

// ----- start -----------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "it" ? "en" : "it";
    localStorage.setItem(LANG_KEY, state.lang);
    render();
  });
  applyStatic();
  if (sessionStorage.getItem(TOKEN_KEY)) enter();
});
