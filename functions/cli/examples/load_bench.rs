//! The load benchmark (`infra/bench/load.sh`): `pec-connector serve`, a process of its own,
//! importing a backlog from the sandbox PEC provider into the Zendesk simulator.
//!
//! 1. Starts the sandbox provider (IMAPS and SMTPS on loopback) with N office mailboxes and the
//!    Zendesk simulator (triggers firing, as in Zendesk), then `serve` (the binary named by
//!    `$PEC_CONNECTOR`), and registers the N accounts through its admin API.
//! 2. Stops `serve` (the outage), and a citizen sends M PEC to every office over the provider's
//!    SMTP server: the backlog waits in the mailboxes as buste di trasporto.
//! 3. Starts `serve` again on the same data directory: it polls every enabled account at once
//!    (the catch-up after a restart), then on the accounts' schedules, until every PEC is a
//!    ticket; then stops it.
//!
//! Reports, for step 3 only (the second process, start to stop): PEC imported per second,
//! Zendesk requests and ticket updates per PEC (from the simulator's request log), state store
//! (SQLite) operations per poll (the process's own count, logged when it stops), CPU time and
//! peak memory of the process (`/proc`); and fails unless every PEC became exactly one ticket.
//!
//! `cargo run --release --example load_bench -- [accounts] [messages] [attachments]`
//! (defaults 200, 20, 0); see `infra/bench/load.sh`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use connector::mailer::Mailer as _;
use connector::mailer::smtp::{SmtpConfig, SmtpMailer, SmtpTrust};
use pec::build::{Address, MailBuilder};
use sandbox::provider::PecProvider;
use sandbox::smtp::SANDBOX_CA_PEM;
use sandbox::{PecProviderSimulator, ZendeskSimulator};
use secrecy::SecretString;
use serde_json::{Value, json};

const CITIZEN: &str = "mario.rossi@pec.cittadini.test";
const CITIZEN_PASSWORD: &str = "bench-cittadino";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// How long the import may take before the benchmark gives up.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(900);

fn office(i: usize) -> String {
    format!("ufficio{i:04}@pec.sandbox.test")
}

fn subject(i: usize, j: usize) -> String {
    format!("Istanza {i:04}-{j:03}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let mut next = |default: usize, what: &str| -> anyhow::Result<usize> {
        args.next()
            .unwrap_or(Ok(default))
            .map_err(|e| anyhow!("{what} must be a number: {e}"))
    };
    let accounts = next(200, "accounts")?;
    let messages = next(20, "messages")?;
    let attachments = next(0, "attachments")?;
    let binary = PathBuf::from(
        std::env::var("PEC_CONNECTOR")
            .context("set PEC_CONNECTOR to the pec-connector binary (infra/bench/load.sh does)")?,
    );
    println!(
        "load benchmark: {accounts} accounts x {messages} PEC ({attachments} attachments each), \
         {}",
        binary.display()
    );

    let temp = tempfile::Builder::new()
        .prefix("pec-connector-load-")
        .tempdir()?;
    let tls_ca = temp.path().join("sandbox-tls-ca.pem");
    std::fs::write(&tls_ca, SANDBOX_CA_PEM)?;
    let pec_ca = temp.path().join("sandbox-pec-ca.pem");
    std::fs::write(&pec_ca, pec::signature::SigningIdentity::sandbox_ca_pem())?;
    let data_dir = temp.path().join("data");

    let provider = PecProviderSimulator::start(PecProvider::new(
        "Gestore Sandbox S.p.A.",
        &["pec.sandbox.test", "pec.cittadini.test"],
    ))
    .await
    .map_err(|e| anyhow!("cannot start the PEC provider simulator: {e}"))?;
    provider.add_user(CITIZEN, CITIZEN_PASSWORD);
    for i in 0..accounts {
        provider.add_user(&office(i), &format!("pw-{i}"));
    }
    let zendesk = ZendeskSimulator::start()
        .await
        .map_err(|e| anyhow!("cannot start the Zendesk simulator: {e}"))?;
    zendesk.set_fire_triggers(true);

    let serve = Serve {
        binary,
        data_dir,
        tls_ca,
        pec_ca,
        zendesk_url: zendesk.base_url().to_owned(),
        zendesk_email: zendesk.credentials().agent_email.clone(),
        zendesk_token: zendesk.credentials().api_token.clone(),
    };

    // 1. Registration.
    let started = Instant::now();
    let first = serve.start().await?;
    let http = reqwest::Client::new();
    for i in 0..accounts {
        let body = json!({
            "address": office(i),
            "password": format!("pw-{i}"),
            "imap_host": "localhost",
            "imap_port": provider.imap_addr().port(),
            "smtp_host": "localhost",
            "smtp_port": provider.smtp_addr().port(),
            "poll_interval_minutes": 1,
        });
        let answer = http
            .post(format!("{}/accounts", first.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await?;
        let status = answer.status();
        let answer: Value = answer.json().await.unwrap_or(Value::Null);
        ensure!(
            status.is_success(),
            "registering {}: {status} {answer}",
            office(i)
        );
    }
    println!(
        "registered {accounts} accounts in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    first.stop()?;

    // 2. The backlog, sent while the connector is down.
    let started = Instant::now();
    let trust =
        SmtpTrust::with_extra_roots(SANDBOX_CA_PEM.as_bytes()).map_err(anyhow::Error::msg)?;
    let attachment = vec![b'%'; 20 * 1024];
    let work: Arc<Mutex<Vec<(usize, usize)>>> = Arc::new(Mutex::new(
        (0..messages)
            .flat_map(|j| (0..accounts).map(move |i| (i, j)))
            .rev()
            .collect(),
    ));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (work, trust, attachment) = (work.clone(), trust.clone(), attachment.clone());
        let port = provider.smtp_addr().port();
        senders.spawn(async move {
            let mut config = SmtpConfig::new("localhost", port, CITIZEN);
            config.timeout = Duration::from_secs(30);
            let smtp = SmtpMailer::new(
                config,
                SecretString::from(CITIZEN_PASSWORD.to_owned()),
                trust,
            );
            loop {
                let Some((i, j)) = work.lock().expect("work").pop() else {
                    return anyhow::Ok(());
                };
                let mut mail = MailBuilder::new()
                    .from(Address::named("Mario Rossi", CITIZEN))
                    .to(office(i).as_str())
                    .subject(&subject(i, j))
                    .message_id(&format!("istanza-{i}-{j}@pec.cittadini.test"))
                    .text("Buongiorno, si trasmette l'istanza in oggetto.\r\nCordiali saluti");
                for k in 0..attachments {
                    mail = mail.attachment(
                        &format!("allegato-{k}.pdf"),
                        "application/pdf",
                        &attachment,
                    );
                }
                smtp.send(CITIZEN, &[office(i)], &mail.build())
                    .await
                    .map_err(|e| anyhow!("sending {}: {e}", subject(i, j)))?;
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done??;
    }
    let expected = accounts * messages;
    for i in 0..accounts {
        let got = provider
            .store()
            .wait_for(&office(i), messages, Duration::from_secs(60))
            .await;
        ensure!(got >= messages, "{} holds {got} messages", office(i));
    }
    println!(
        "sent {expected} PEC in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 3. The import, measured.
    let before = zendesk.requests().len();
    let started = Instant::now();
    let second = serve.start().await?;
    let mut imported = 0;
    while started.elapsed() < IMPORT_TIMEOUT {
        imported = zendesk
            .tickets()
            .iter()
            .filter(|t| t.subject.starts_with("Istanza "))
            .count();
        if imported >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let import = started.elapsed();
    let usage = second.usage()?;
    let log = second.stop()?;
    ensure!(
        imported >= expected,
        "{imported} of {expected} PEC imported after {} s",
        IMPORT_TIMEOUT.as_secs()
    );

    // Every PEC exactly once.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in zendesk.tickets() {
        if t.subject.starts_with("Istanza ") {
            *seen.entry(t.subject).or_default() += 1;
        }
    }
    for i in 0..accounts {
        for j in 0..messages {
            match seen.get(&subject(i, j)) {
                Some(1) => {}
                Some(n) => bail!("{} became {n} tickets", subject(i, j)),
                None => bail!("{} became no ticket", subject(i, j)),
            }
        }
    }

    let requests = &zendesk.requests()[before..];
    let api: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/"))
        .collect();
    let updates = api
        .iter()
        .filter(|r| r.method == "PUT" && r.path.starts_with("/api/v2/tickets"))
        .count();
    let uploads = api
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/uploads"))
        .count();
    let creates = api
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/tickets")
        .count();
    let limited = api.iter().filter(|r| r.rate_limited).count();
    let per = |n: usize| n as f64 / expected as f64;
    println!("every PEC imported exactly once: {expected} tickets");
    println!(
        "import: {:.1} s wall, {:.1} PEC/s",
        import.as_secs_f64(),
        expected as f64 / import.as_secs_f64()
    );
    println!(
        "zendesk requests per PEC: {:.2} ({} uploads, {} creates, {} other, {limited} answered 429)",
        per(api.len()),
        uploads,
        creates,
        api.len() - uploads - creates
    );
    println!("ticket updates per PEC: {:.2}", per(updates));
    println!(
        "state store (SQLite) operations: {} in {} polls, {:.1} per poll, {:.2} per PEC",
        log.store_operations,
        log.polls,
        log.store_operations as f64 / log.polls.max(1) as f64,
        per(log.store_operations as usize)
    );
    println!(
        "serve process: {:.1} s CPU ({:.0}% of one core over the import), peak memory {} MB",
        usage.cpu_seconds,
        100.0 * usage.cpu_seconds / import.as_secs_f64(),
        usage.peak_kb / 1024
    );
    provider.shutdown().await;
    zendesk.shutdown().await;
    Ok(())
}

/// How to start `serve` against the simulators.
struct Serve {
    binary: PathBuf,
    data_dir: PathBuf,
    tls_ca: PathBuf,
    pec_ca: PathBuf,
    zendesk_url: String,
    zendesk_email: String,
    zendesk_token: String,
}

/// A running `serve`, its log read on a thread.
struct Running {
    child: Child,
    base: String,
    log: std::thread::JoinHandle<StopLine>,
}

/// What `serve` logs when it stops.
#[derive(Debug, Default)]
struct StopLine {
    polls: u64,
    store_operations: u64,
}

struct Usage {
    cpu_seconds: f64,
    peak_kb: u64,
}

impl Serve {
    async fn start(&self) -> anyhow::Result<Running> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--zendesk-url", &self.zendesk_url])
            .args(["--zendesk-email", &self.zendesk_email])
            .arg("--trust-ca")
            .arg(&self.tls_ca)
            .arg("--trust-pec-ca")
            .arg(&self.pec_ca)
            .env("ZENDESK_API_TOKEN", &self.zendesk_token)
            .env("PEC_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn,pec_connector=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        let stderr = child.stderr.take().context("serve's stderr")?;
        let log = std::thread::spawn(move || read_log(stderr));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("serve exited with {status}");
            }
            ensure!(Instant::now() < deadline, "serve did not answer in 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Running { child, base, log })
    }
}

impl Running {
    fn usage(&self) -> anyhow::Result<Usage> {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |n: usize| -> f64 { fields.get(n).and_then(|v| v.parse().ok()).unwrap_or(0.0) };
        let hz = 100.0; // USER_HZ on Linux
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let peak_kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Ok(Usage {
            cpu_seconds: (ticks(11) + ticks(12)) / hz,
            peak_kb,
        })
    }

    fn stop(mut self) -> anyhow::Result<StopLine> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        ensure!(status.success(), "serve stopped with {status}");
        self.log.join().map_err(|_| anyhow!("log reader"))
    }
}

/// Echoes warnings and errors; keeps the figures of the `stopped` line.
fn read_log(stderr: impl std::io::Read) -> StopLine {
    let mut stop = StopLine::default();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.contains("WARN") || line.contains("ERROR") {
            eprintln!("serve: {line}");
        }
        if line.contains(" stopped") {
            stop.polls = field(&line, "polls");
            stop.store_operations = field(&line, "store_operations");
        }
    }
    stop
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
