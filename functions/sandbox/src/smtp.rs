//! The PEC provider's SMTP submission server, simulated: implicit TLS (as on port 465) with the
//! sandbox's own test certificate ([`SANDBOX_CA_PEM`]), AUTH PLAIN and LOGIN, then MAIL, RCPT and
//! DATA. Every accepted message is handed over as a [`Submission`] (the authenticated user, the
//! envelope and the raw bytes) — to a channel the provider behaviour reads, or kept for a test.
//!
//! Enough SMTP for real clients (the connector's lettre-based mailer): EHLO/HELO, AUTH, MAIL
//! FROM (parameters ignored), RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT. A refused
//! password answers `535 5.7.8`; commands before AUTH answer `530 5.7.0`; a message over the size
//! limit answers `552 5.3.4`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The sandbox's test CA: trust it (and only in tests and the demo) to talk to the simulators.
pub const SANDBOX_CA_PEM: &str = include_str!("tls/ca.pem");
const SERVER_CERT_PEM: &str = include_str!("tls/server.pem");
const SERVER_KEY_PEM: &str = include_str!("tls/server.key");

/// One message accepted by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub authenticated_user: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub raw: Vec<u8>,
}

/// Who may log in: a user name and password check.
pub type Logins = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Called with every accepted message, after it is kept and before the client hears `250`.
pub type OnSubmission = Arc<dyn Fn(Submission) + Send + Sync>;

/// A running SMTP submission server on loopback.
pub struct SmtpSimulator {
    addr: SocketAddr,
    submissions: Arc<Mutex<Vec<Submission>>>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// The server's TLS identity: the sandbox certificate for `localhost` and `127.0.0.1`.
pub(crate) fn acceptor() -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(SERVER_CERT_PEM.as_bytes())
            .chain(CertificateDer::pem_slice_iter(SANDBOX_CA_PEM.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("sandbox certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes())
        .map_err(|e| format!("sandbox key: {e}"))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl SmtpSimulator {
    /// Starts on 127.0.0.1 (a free port); `logins` decides who may authenticate; `max_size` is
    /// the largest message accepted.
    pub async fn start(logins: Logins, max_size: usize) -> Result<SmtpSimulator, String> {
        Self::start_with(logins, max_size, None).await
    }

    /// [`Self::start`], handing every accepted message to `on_submission` too.
    pub async fn start_with(
        logins: Logins,
        max_size: usize,
        on_submission: Option<OnSubmission>,
    ) -> Result<SmtpSimulator, String> {
        let acceptor = acceptor()?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let submissions = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = oneshot::channel();
        let kept = submissions.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let (acceptor, logins, kept) = (acceptor.clone(), logins.clone(), kept.clone());
                        let hook = on_submission.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let _ = session(tls, logins, kept, hook, max_size).await;
                            }
                        });
                    }
                }
            }
        });
        Ok(SmtpSimulator {
            addr,
            submissions,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message accepted so far, oldest first.
    pub fn submissions(&self) -> Vec<Submission> {
        self.submissions.lock().expect("not poisoned").clone()
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SmtpSimulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// `<addr>` from `MAIL FROM:<addr> PARAMS` / `RCPT TO:<addr>`.
fn path_of(arg: &str) -> Option<String> {
    let start = arg.find('<')?;
    let end = arg[start..].find('>')? + start;
    Some(arg[start + 1..end].trim().to_owned())
}

fn b64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

async fn session<S>(
    stream: S,
    logins: Logins,
    kept: Arc<Mutex<Vec<Submission>>>,
    hook: Option<OnSubmission>,
    max_size: usize,
) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    let mut user: Option<String> = None;
    let mut from: Option<String> = None;
    let mut rcpts: Vec<String> = Vec::new();
    write
        .write_all(b"220 smtps.pec.sandbox.test ESMTP sandbox\r\n")
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_owned();
        let (verb, arg) = match cmd.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.to_owned()),
            None => (cmd.to_ascii_uppercase(), String::new()),
        };
        let reply: String = match verb.as_str() {
            "EHLO" => format!(
                "250-smtps.pec.sandbox.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE {max_size}\r\n"
            ),
            "HELO" => "250 smtps.pec.sandbox.test\r\n".to_owned(),
            "NOOP" => "250 2.0.0 OK\r\n".to_owned(),
            "RSET" => {
                from = None;
                rcpts.clear();
                "250 2.0.0 OK\r\n".to_owned()
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mech = parts.next().unwrap_or("").to_ascii_uppercase();
                let creds = match mech.as_str() {
                    "PLAIN" => {
                        let initial = match parts.next() {
                            Some(i) => i.to_owned(),
                            None => {
                                write.write_all(b"334 \r\n").await?;
                                line.clear();
                                lines.read_line(&mut line).await?;
                                line.trim().to_owned()
                            }
                        };
                        b64(&initial).and_then(|raw| {
                            let mut f = raw.split(|b| *b == 0);
                            let _authz = f.next()?;
                            let u = String::from_utf8(f.next()?.to_vec()).ok()?;
                            let p = String::from_utf8(f.next()?.to_vec()).ok()?;
                            Some((u, p))
                        })
                    }
                    "LOGIN" => {
                        write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                        line.clear();
                        lines.read_line(&mut line).await?;
                        let u = b64(&line).and_then(|b| String::from_utf8(b).ok());
                        write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                        line.clear();
                        lines.read_line(&mut line).await?;
                        let p = b64(&line).and_then(|b| String::from_utf8(b).ok());
                        u.zip(p)
                    }
                    _ => None,
                };
                match creds {
                    Some((u, p)) if logins(&u, &p) => {
                        user = Some(u);
                        "235 2.7.0 Authentication successful\r\n".to_owned()
                    }
                    Some(_) => "535 5.7.8 Authentication credentials invalid\r\n".to_owned(),
                    None => "501 5.5.4 Malformed AUTH\r\n".to_owned(),
                }
            }
            "MAIL" | "RCPT" | "DATA" if user.is_none() => {
                "530 5.7.0 Authentication required\r\n".to_owned()
            }
            "MAIL" => match path_of(&arg) {
                Some(p) => {
                    from = Some(p);
                    rcpts.clear();
                    "250 2.1.0 OK\r\n".to_owned()
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>\r\n".to_owned(),
            },
            "RCPT" => match (&from, path_of(&arg)) {
                (None, _) => "503 5.5.1 MAIL first\r\n".to_owned(),
                (_, None) => "501 5.5.4 Syntax: RCPT TO:<address>\r\n".to_owned(),
                (_, Some(r)) => {
                    rcpts.push(r);
                    "250 2.1.5 OK\r\n".to_owned()
                }
            },
            "DATA" => {
                if from.is_none() || rcpts.is_empty() {
                    "503 5.5.1 MAIL and RCPT first\r\n".to_owned()
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let mut raw = Vec::new();
                    let mut too_big = false;
                    loop {
                        let mut l = Vec::new();
                        if lines.read_until(b'\n', &mut l).await? == 0 {
                            return Ok(());
                        }
                        if l == b".\r\n" || l == b".\n" {
                            break;
                        }
                        let l = if l.starts_with(b"..") {
                            &l[1..]
                        } else {
                            &l[..]
                        };
                        if raw.len() + l.len() > max_size {
                            too_big = true;
                        } else {
                            raw.extend_from_slice(l);
                        }
                    }
                    if too_big {
                        "552 5.3.4 Message size exceeds fixed maximum message size\r\n".to_owned()
                    } else {
                        let submission = Submission {
                            authenticated_user: user.clone().unwrap_or_default(),
                            mail_from: from.take().unwrap_or_default(),
                            recipients: std::mem::take(&mut rcpts),
                            raw,
                        };
                        let n = {
                            let mut kept = kept.lock().expect("not poisoned");
                            kept.push(submission.clone());
                            kept.len()
                        };
                        if let Some(hook) = &hook {
                            hook(submission);
                        }
                        format!("250 2.0.0 OK queued as sandbox-{n}\r\n")
                    }
                }
            }
            _ => "502 5.5.2 Command not recognized\r\n".to_owned(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_from_angle_brackets() {
        assert_eq!(
            path_of("FROM:<a@b.it> BODY=8BITMIME").as_deref(),
            Some("a@b.it")
        );
        assert_eq!(path_of("TO:<x@y.it>").as_deref(), Some("x@y.it"));
        assert_eq!(path_of("FROM:a@b.it"), None);
    }

    #[tokio::test]
    async fn the_tls_identity_loads() {
        assert!(acceptor().is_ok());
        let sim = SmtpSimulator::start(
            Arc::new(|u, p| u == "a@pec.sandbox.test" && p == "pw"),
            1000,
        )
        .await
        .unwrap();
        assert!(sim.addr().ip().is_loopback());
        sim.shutdown().await;
    }
}
