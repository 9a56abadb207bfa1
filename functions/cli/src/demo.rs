//! `pec-connector demo`: the whole loop on this machine, offline.
//!
//! Starts a simulated PEC provider ([`sandbox::PecProviderSimulator`]: SMTPS and IMAPS on
//! loopback, the sandbox test CA), the Zendesk simulator ([`sandbox::ZendeskSimulator`]) and the
//! connector itself ([`crate::serve::Server`], SQLite and secrets in a temporary directory,
//! trusting the sandbox CAs); then, printing each step as it happens:
//!
//! 1. registers the office's PEC box through the admin API (IMAP and SMTP login checks,
//!    Zendesk webhook, category and triggers — as on a real deployment);
//! 2. a citizen sends a PEC to the office over SMTP; the provider answers with the accettazione
//!    and delivers the busta di trasporto;
//! 3. the connector polls the box ("poll now"): the PEC becomes a ticket;
//! 4. an agent replies on the ticket in Zendesk; Zendesk's trigger calls the connector's webhook
//!    and the reply leaves as a PEC;
//! 5. the provider's accettazione and avvenuta consegna come back to the office's box and the
//!    next poll puts them on the ticket as notes; the citizen finds the reply in their box.
//!
//! Then it keeps running with the URLs to poke at until Ctrl-C, or exits with `--once`.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use connector::mailer::Mailer;
use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use pec::build::{Address, MailBuilder};
use pec::{Kind, PecMessage, ReceiptKind};
use sandbox::provider::{PecProvider, Quirks};
use sandbox::smtp::SANDBOX_CA_PEM;
use sandbox::zendesk::CallOutcome;
use sandbox::{PecProviderSimulator, ZendeskSimulator};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::serve::{ServeConfig, Server};

/// The provider's name in every daticert.
pub const GESTORE: &str = "Gestore Sandbox S.p.A.";
/// The office's PEC box, connected to Zendesk.
pub const OFFICE: &str = "protocollo@pec.sandbox.test";
/// A citizen with a PEC box at the same provider (another hosted domain).
pub const CITIZEN: &str = "mario.rossi@pec.cittadini.test";
const CITIZEN_NAME: &str = "Mario Rossi";
/// Demo passwords: the simulated provider's mailboxes, nothing real.
const OFFICE_PASSWORD: &str = "demo-protocollo";
const CITIZEN_PASSWORD: &str = "demo-cittadino";
/// How long one step may take before the demo gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(15);

/// `pec-connector demo`'s flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// Exit once the loop is complete instead of running until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Address the connector's HTTP API listens on [default: 127.0.0.1:0, a free port]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// What the loop produced, for callers that check it.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub ticket_id: u64,
    /// The ticket's comments, oldest first: (public, body).
    pub comments: Vec<(bool, String)>,
    /// The kinds of the messages in the office's box, oldest first.
    pub office_box: Vec<Kind>,
    /// The kinds of the messages in the citizen's box, oldest first.
    pub citizen_box: Vec<Kind>,
    pub elapsed: Duration,
}

/// The `demo` subcommand.
pub fn main(args: DemoArgs) -> ExitCode {
    // The demo prints its own steps; the connector's log shows only warnings unless asked.
    crate::serve::init_logging("warn");
    crate::serve::block_on("pec-connector demo", async move {
        let shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = if args.once {
            Box::pin(async {})
        } else {
            Box::pin(crate::serve::shutdown_signal())
        };
        run(&args, &mut |line: &str| println!("{line}"), shutdown).await
    })
}

/// The demo's world: the PEC provider and Zendesk simulators and the connector between them,
/// its state in a temporary directory (removed on [`Sandbox::shutdown`] or drop). Tests use it
/// to drive the same loop with the provider's quirks switched on.
pub struct Sandbox {
    pub provider: PecProviderSimulator,
    pub zendesk: ZendeskSimulator,
    /// The connector's HTTP API, `http://127.0.0.1:<port>`.
    pub base: String,
    pub data_dir: PathBuf,
    pub admin_token_file: PathBuf,
    /// The sandbox's TLS CA (PEM), for a mail client or `curl --cacert`.
    pub tls_ca: PathBuf,
    admin_token: SecretString,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _temp: tempfile::TempDir,
}

impl Sandbox {
    /// Starts the simulators (the provider with `quirks`) and the connector (`serve`, trusting
    /// the sandbox's TLS and signing CAs); the office's and the citizen's mailboxes exist.
    pub async fn start(args: &DemoArgs, quirks: Quirks) -> anyhow::Result<Sandbox> {
        // The temporary directory holds the state, the secrets and the two sandbox CAs.
        let temp = tempfile::Builder::new()
            .prefix("pec-connector-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        // Never a directory of a real `serve`: its accounts would be polled into the simulator.
        let data_dir = temp.path().join("data");
        let tls_ca = temp.path().join("sandbox-tls-ca.pem");
        std::fs::write(&tls_ca, SANDBOX_CA_PEM)?;
        let pec_ca = temp.path().join("sandbox-pec-ca.pem");
        std::fs::write(&pec_ca, pec::signature::SigningIdentity::sandbox_ca_pem())?;

        let provider = PecProviderSimulator::start(
            PecProvider::new(GESTORE, &["pec.sandbox.test", "pec.cittadini.test"])
                .with_quirks(quirks),
        )
        .await
        .map_err(|e| anyhow!("cannot start the PEC provider simulator: {e}"))?;
        provider.add_user(OFFICE, OFFICE_PASSWORD);
        provider.add_user(CITIZEN, CITIZEN_PASSWORD);
        let zendesk = ZendeskSimulator::start()
            .await
            .map_err(|e| anyhow!("cannot start the Zendesk simulator: {e}"))?;
        // As in Zendesk, every update runs the triggers (API ones too).
        zendesk.set_fire_triggers(true);

        // The connector, as `pec-connector serve` runs it.
        let server = Server::start(ServeConfig {
            listen: args
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:0".to_owned()),
            data_dir: data_dir.clone(),
            zendesk_url: zendesk.base_url().to_owned(),
            zendesk_email: zendesk.credentials().agent_email.clone(),
            zendesk_api_token: Some(SecretString::from(zendesk.credentials().api_token.clone())),
            // Generated and kept in the data directory, as `serve` does.
            admin_token: None,
            public_url: None,
            trust_ca: Some(tls_ca.clone()),
            agent_reserve_percent: 20,
            trust_pec_ca: Some(pec_ca),
        })
        .await?;
        let base = format!("http://{}", server.local_addr());
        let admin_token_file = server.admin_token_file().to_owned();
        let admin_token = SecretString::from(
            std::fs::read_to_string(&admin_token_file)
                .context("cannot read the generated admin token")?
                .trim()
                .to_owned(),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Ok(Sandbox {
            provider,
            zendesk,
            base,
            data_dir,
            admin_token_file,
            tls_ca,
            admin_token,
            http: reqwest::Client::new(),
            stop: Some(stop),
            serving: Some(serving),
            _temp: temp,
        })
    }

    /// Calls the connector's admin API; a non-2xx answer is an error naming the status.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        use secrecy::ExposeSecret as _;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.admin_token.expose_secret())
            .timeout(STEP_TIMEOUT);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.context("admin API call")?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("the admin API answered {status}: {body}");
        }
        Ok(body)
    }

    /// Registers the office's PEC box; its account id.
    pub async fn register_office(&self) -> anyhow::Result<String> {
        let account = self
            .admin(
                reqwest::Method::POST,
                "/accounts",
                Some(json!({
                    "address": OFFICE,
                    "password": OFFICE_PASSWORD,
                    "imap_host": "localhost",
                    "imap_port": self.provider.imap_addr().port(),
                    "smtp_host": "localhost",
                    "smtp_port": self.provider.smtp_addr().port(),
                    "poll_interval_minutes": 1,
                })),
            )
            .await
            .context("registering the demo account")?;
        Ok(account["id"]
            .as_str()
            .ok_or_else(|| anyhow!("no account id in {account}"))?
            .to_owned())
    }

    /// "Poll now" for `account`: the poll's outcome.
    pub async fn poll(&self, account: &str) -> anyhow::Result<Value> {
        self.admin(
            reqwest::Method::POST,
            &format!("/accounts/{account}/poll"),
            None,
        )
        .await
    }

    /// The citizen sends the office a PEC over the provider's SMTP server.
    pub async fn citizen_sends(&self, subject: &str, text: &str) -> anyhow::Result<()> {
        let request = MailBuilder::new()
            .from(Address::named(CITIZEN_NAME, CITIZEN))
            .to(OFFICE)
            .subject(subject)
            .message_id(&format!(
                "richiesta-{}-{}@pec.cittadini.test",
                std::process::id(),
                self.provider.submissions().len()
            ))
            .text(text)
            .attachment(
                "documento-identita.pdf",
                "application/pdf",
                b"%PDF-1.4 documento di identita (demo)",
            )
            .build();
        let mut config = SmtpConfig::new("localhost", self.provider.smtp_addr().port(), CITIZEN);
        config.timeout = STEP_TIMEOUT;
        let citizen_smtp = SmtpMailer::new(
            config,
            SecretString::from(CITIZEN_PASSWORD.to_owned()),
            SmtpTrust::with_extra_roots(SANDBOX_CA_PEM.as_bytes()).map_err(anyhow::Error::msg)?,
        );
        citizen_smtp
            .send(CITIZEN, &[OFFICE.to_owned()], &request)
            .await
            .map_err(|e| anyhow!("the citizen's PEC was refused: {e}"))?;
        Ok(())
    }

    /// Waits until the mailbox of `address` holds `n` messages.
    pub async fn wait_for(&self, address: &str, n: usize) -> anyhow::Result<()> {
        let got = self
            .provider
            .store()
            .wait_for(address, n, STEP_TIMEOUT)
            .await;
        if got < n {
            bail!(
                "{address} holds {got} messages after {} s, expected {n}",
                STEP_TIMEOUT.as_secs()
            );
        }
        Ok(())
    }

    /// The kinds of the messages in the mailbox of `address`, oldest first.
    pub fn mailbox_kinds(&self, address: &str) -> Vec<Kind> {
        self.provider
            .store()
            .messages(address)
            .iter()
            .filter_map(|raw| PecMessage::parse(raw).ok().map(|m| m.kind))
            .collect()
    }

    /// Stops the connector, then the simulators.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        self.provider.shutdown().await;
        self.zendesk.shutdown().await;
    }
}

/// Runs the loop, printing through `say`; then waits for `shutdown` before stopping
/// everything (give a ready future to stop at once).
pub async fn run(
    args: &DemoArgs,
    say: &mut (dyn FnMut(&str) + Send),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let mut step = |text: &str| {
        say(&format!(
            "[{:5.2} s] {text}",
            started.elapsed().as_secs_f64()
        ))
    };
    let world = Sandbox::start(args, Quirks::default()).await?;
    step(&format!(
        "PEC provider simulator \"{GESTORE}\" up: SMTPS {}, IMAPS {}; mailboxes {OFFICE} (the \
         office) and {CITIZEN} (a citizen)",
        world.provider.smtp_addr(),
        world.provider.imap_addr()
    ));
    step(&format!(
        "Zendesk simulator up: {}",
        world.zendesk.base_url()
    ));
    step(&format!(
        "Connector up (pec-connector serve): {}, state in {}",
        world.base,
        world.data_dir.display()
    ));

    let report = the_loop(&world, &mut step).await.map(|mut report| {
        report.elapsed = started.elapsed();
        step(&format!(
            "Done: the whole loop took {:.1} s.",
            report.elapsed.as_secs_f64()
        ));
        report
    });
    if report.is_ok() && !args.once {
        say("");
        say("Still running — poke at it (Ctrl-C stops everything):");
        say(&format!(
            "  connector API   {}  (GET /health, GET /openapi.json; admin routes need the \
             bearer token in {})",
            world.base,
            world.admin_token_file.display()
        ));
        say(&format!(
            "  admin console   {}/admin  (in a browser; sign in with the admin token in {})",
            world.base,
            world.admin_token_file.display()
        ));
        say(&format!(
            "  Zendesk         {}/api/v2/tickets  (Basic auth {}/token : {})",
            world.zendesk.base_url(),
            world.zendesk.credentials().agent_email,
            world.zendesk.credentials().api_token
        ));
        say(&format!(
            "  PEC provider    IMAPS {} / SMTPS {} (TLS by the sandbox CA, {}); {OFFICE} / \
             {OFFICE_PASSWORD}, {CITIZEN} / {CITIZEN_PASSWORD}",
            world.provider.imap_addr(),
            world.provider.smtp_addr(),
            world.tls_ca.display()
        ));
        if let Ok(report) = &report {
            let credentials = world.zendesk.credentials();
            say("");
            say(
                "The connector polls the office's box every minute. To send the account's \
                 template PEC from Zendesk, tag the ticket as the trigger \"Reply by PEC \
                 Connector\" expects:",
            );
            say(&format!(
                "  curl -u '{}/token:{}' -X PUT -H 'Content-Type: application/json' \\\n    \
                 -d '{{\"ticket\":{{\"additional_tags\":[\"{}\"]}}}}' \\\n    \
                 {}/api/v2/tickets/{}",
                credentials.agent_email,
                credentials.api_token,
                connector::domain::tags::reply_tag(OFFICE),
                world.zendesk.base_url(),
                report.ticket_id
            ));
        }
        shutdown.await;
    }
    world.shutdown().await;
    report
}

/// Steps 1 to 5 (see the module documentation).
async fn the_loop(
    world: &Sandbox,
    step: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<DemoReport> {
    let (provider, zendesk) = (&world.provider, &world.zendesk);

    // 1. Register the office's box.
    let id = world.register_office().await?;
    let triggers: Vec<String> = zendesk.triggers().into_iter().map(|t| t.title).collect();
    step(&format!(
        "1. Account {OFFICE} registered (id {id}): IMAP and SMTP logins checked; in Zendesk: \
         webhook \"PEC Connector\", triggers {}",
        triggers
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 2. The citizen sends a PEC.
    world
        .citizen_sends(
            "Richiesta di accesso agli atti",
            "Buongiorno,\nchiedo copia della delibera n. 42/2026 sul servizio mensa.\n\
             Cordiali saluti,\nMario Rossi\n",
        )
        .await?;
    let store = provider.store();
    world.wait_for(OFFICE, 1).await?;
    world.wait_for(CITIZEN, 2).await?;
    let answers: Vec<String> = store
        .messages(CITIZEN)
        .iter()
        .map(|m| describe(m))
        .collect();
    step(&format!(
        "2. {CITIZEN_NAME} sent a PEC to {OFFICE}: \"Richiesta di accesso agli atti\"; the \
         provider delivered the busta di trasporto to the office's box and gave the citizen {}",
        answers.join(" and ")
    ));

    // 3. Poll now: the PEC becomes a ticket.
    let polled = world.poll(&id).await?;
    let ticket = zendesk
        .tickets()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the poll created no ticket: {polled}"))?;
    let requester = zendesk
        .users()
        .into_iter()
        .find(|u| u.id == ticket.requester_id)
        .map(|u| format!("{} <{}>", u.name, u.email))
        .unwrap_or_default();
    step(&format!(
        "3. The connector polled the box ({} ticket created): ticket #{} \"{}\" from {requester}, \
         tags {}",
        polled["tickets_created"],
        ticket.id,
        ticket.subject,
        ticket.tags.join(" ")
    ));

    // 4. An agent replies; Zendesk's trigger calls the webhook; the PEC leaves.
    let before = provider.submissions().len();
    zendesk
        .agent_reply(
            ticket.id,
            "Gentile Mario Rossi,\nin allegato trova la delibera richiesta.\nCordiali saluti,\nUfficio Protocollo",
            true,
        )
        .ok_or_else(|| anyhow!("the agent's reply was not added to ticket #{}", ticket.id))?;
    zendesk.wait_for_firings(1, STEP_TIMEOUT).await;
    let firings = zendesk.trigger_firings();
    let fired = firings
        .iter()
        .map(|f| {
            let calls: Vec<String> = f
                .calls
                .iter()
                .map(|c| match &c.outcome {
                    CallOutcome::Status(s) => format!("webhook {} answered {s}", c.url),
                    CallOutcome::Failed(e) => format!("webhook {} failed: {e}", c.url),
                    CallOutcome::Pending => format!("webhook {} still running", c.url),
                })
                .collect();
            format!("trigger \"{}\" ({})", f.trigger_title, calls.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    if !firings.iter().any(|f| {
        f.calls
            .iter()
            .any(|c| matches!(c.outcome, CallOutcome::Status(200..=299)))
    }) {
        bail!("no trigger called the connector's webhook successfully: {fired}");
    }
    step(&format!(
        "4. An agent replied publicly on ticket #{}; Zendesk fired {fired}",
        ticket.id
    ));
    let sent = provider
        .submissions()
        .into_iter()
        .nth(before)
        .ok_or_else(|| anyhow!("no PEC left the connector after the agent's reply"))?;
    let sent_message = mailparse::parse_mail(&sent.raw).ok();
    let header = |name: &str| {
        sent_message
            .as_ref()
            .and_then(|m| mailparse::MailHeaderMap::get_first_value(m.headers.as_slice(), name))
            .unwrap_or_default()
    };
    step(&format!(
        "   The reply left as PEC over SMTP: From {} To {} Subject \"{}\" Message-ID {}",
        sent.mail_from,
        sent.recipients.join(", "),
        header("Subject"),
        header("Message-ID")
    ));

    // 5. The receipts come back and land on the ticket.
    world.wait_for(CITIZEN, 3).await?;
    world.wait_for(OFFICE, 3).await?;
    let receipts: Vec<String> = store.messages(OFFICE)[1..]
        .iter()
        .map(|raw| describe(raw))
        .collect();
    step(&format!(
        "5. The provider delivered the reply to {CITIZEN} ({}) and sent the office: {}",
        describe(&last_message(store, CITIZEN)?),
        receipts.join(", ")
    ));
    let polled = world.poll(&id).await?;
    let comments: Vec<(bool, String)> = zendesk
        .comments(ticket.id)
        .into_iter()
        .map(|c| (c.public, c.body))
        .collect();
    step(&format!(
        "   The connector polled again ({} receipts); ticket #{} now reads:",
        polled["receipts_noted"], ticket.id
    ));
    for (public, body) in &comments {
        let mut first: String = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .take(2)
            .collect::<Vec<_>>()
            .join(" — ");
        if first.chars().count() > 110 {
            first = first.chars().take(109).collect::<String>() + "…";
        }
        step(&format!(
            "     - {} {first}",
            if *public { "[public] " } else { "[note]   " }
        ));
    }
    let report = DemoReport {
        ticket_id: ticket.id,
        comments,
        office_box: world.mailbox_kinds(OFFICE),
        citizen_box: world.mailbox_kinds(CITIZEN),
        elapsed: Duration::ZERO,
    };
    let consegna = Kind::Receipt(ReceiptKind::AvvenutaConsegna);
    if !report.office_box.contains(&consegna) {
        bail!(
            "no avvenuta consegna reached the office: {:?}",
            report.office_box
        );
    }
    Ok(report)
}

fn last_message(store: &sandbox::mailstore::MailStore, address: &str) -> anyhow::Result<Vec<u8>> {
    store
        .messages(address)
        .pop()
        .ok_or_else(|| anyhow!("{address} is empty"))
}

/// "the accettazione (identificativo opec1...)" and the like.
fn describe(raw: &[u8]) -> String {
    let mut anchors = pec::TrustAnchors::pec();
    let sandbox_trusted = anchors
        .add_pem(pec::signature::SigningIdentity::sandbox_ca_pem())
        .is_ok();
    let Ok(m) = PecMessage::parse_with(raw, &pec::Limits::default(), &anchors) else {
        return "an unreadable message".to_owned();
    };
    let what = match m.kind {
        Kind::Envelope => "a busta di trasporto",
        Kind::Anomaly => "a busta di anomalia",
        Kind::Receipt(ReceiptKind::Accettazione) => "the accettazione",
        Kind::Receipt(ReceiptKind::NonAccettazione) => "an avviso di non accettazione",
        Kind::Receipt(ReceiptKind::AvvenutaConsegna) => "the avvenuta consegna",
        Kind::Receipt(ReceiptKind::ErroreConsegna) => "an avviso di mancata consegna",
        Kind::Receipt(ReceiptKind::PreavvisoErroreConsegna) => "a preavviso di mancata consegna",
        Kind::Receipt(_) => "a receipt",
        Kind::NonPec => "ordinary mail",
    };
    let id = m
        .daticert
        .as_ref()
        .and_then(|d| d.identificativo.clone())
        .unwrap_or_default();
    let signature = match m.signature.verdict {
        pec::Verdict::Valid if sandbox_trusted => "signature valid by the sandbox CA",
        pec::Verdict::Valid => "signature valid",
        pec::Verdict::Untrusted => "signature by an untrusted CA",
        pec::Verdict::Invalid => "signature INVALID",
        pec::Verdict::Missing => "not signed",
    };
    format!("{what} (identificativo {id}, {signature})")
}
