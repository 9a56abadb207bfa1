//! [`SmtpMailer`]: the mailer port over SMTP with implicit TLS (port 465) and AUTH PLAIN/LOGIN,
//! as PEC providers require, using lettre's async client on rustls.
//!
//! The exchange is driven step by step (connect, AUTH, MAIL, RCPT per recipient, DATA) so that a
//! refusal is attributed to the step that caused it: a 550 at RCPT names the recipient, a 535 at
//! AUTH is a password problem. The enhanced status code `5.7.1` outranks the step: at AUTH, MAIL
//! or RCPT alike it is the provider refusing the client's IP address (Aruba: `554 5.7.1
//! Indirizzo IP bloccato`), not a password or a recipient. Every step has its own timeout.
//!
//! Once the whole message, final dot included, has been handed to the connection, a failure to
//! hear the answer (a closed or reset connection, an unreadable reply, the timeout) is
//! [`SendError::Ambiguous`]: the provider may have accepted the message. Before that point the
//! message cannot have been accepted, and the failure is what it is (connection, TLS, timeout).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use super::{Mailer, SendError, SendReceipt};

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    /// 465 (implicit TLS) for every PEC provider.
    pub port: u16,
    /// The login name: usually the PEC address.
    pub username: String,
    /// The limit for each step: connecting, each command, the message and its answer.
    pub timeout: Duration,
}

impl SmtpConfig {
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port,
            username: username.into(),
            timeout: Duration::from_secs(60),
        }
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// TLS trust for SMTP, as for IMAP: the public web PKI roots plus extra roots named explicitly
/// (a test server's certificate). Certificates are always verified.
#[derive(Clone, Default)]
pub struct SmtpTrust {
    extra_roots_pem: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for SmtpTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpTrust")
            .field("extra_roots", &self.extra_roots_pem.is_some())
            .finish()
    }
}

impl SmtpTrust {
    /// The public web PKI roots only.
    pub fn webpki() -> SmtpTrust {
        SmtpTrust::default()
    }

    /// The public roots plus every certificate in `pem` (at least one).
    pub fn with_extra_roots(pem: &[u8]) -> Result<SmtpTrust, String> {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            cert.map_err(|e| format!("cannot read a root certificate: {e}"))?;
            added += 1;
        }
        if added == 0 {
            return Err("no certificate in the extra roots PEM".to_owned());
        }
        Ok(SmtpTrust {
            extra_roots_pem: Some(pem.into()),
        })
    }

    fn parameters(&self, host: &str) -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(host.to_owned())
            .certificate_store(CertificateStore::WebpkiRoots);
        if let Some(pem) = &self.extra_roots_pem {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| format!("cannot use a root certificate: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        builder.build_rustls().map_err(|e| e.to_string())
    }
}

/// A PEC account's outgoing server, reached over SMTPS.
pub struct SmtpMailer {
    config: SmtpConfig,
    password: SecretString,
    trust: SmtpTrust,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SmtpMailer {
    pub fn new(config: SmtpConfig, password: SecretString, trust: SmtpTrust) -> SmtpMailer {
        SmtpMailer {
            config,
            password,
            trust,
        }
    }

    /// Runs one step under the step timeout, mapping lettre's error to ours.
    async fn step<T>(
        &self,
        stage: &'static str,
        fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, SendError> {
        match tokio::time::timeout(self.config.timeout, fut).await {
            Ok(result) => result.map_err(|e| self.error(stage, &e)),
            Err(_) => Err(SendError::Timeout {
                server: self.config.server(),
                stage,
                after: self.config.timeout,
            }),
        }
    }

    async fn exchange(
        &self,
        conn: &mut AsyncSmtpConnection,
        from: Address,
        recipients: &[(Address, &String)],
        message: &[u8],
    ) -> Result<Response, SendError> {
        self.authenticate(conn).await?;

        let mut options = Vec::new();
        let ascii = |a: &Address| AsRef::<str>::as_ref(a).is_ascii();
        if !ascii(&from) || recipients.iter().any(|(a, _)| !ascii(a)) {
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        self.step("MAIL FROM", conn.command(Mail::new(Some(from), options)))
            .await?;
        for (address, raw) in recipients {
            self.step("RCPT TO", conn.command(Rcpt::new(address.clone(), vec![])))
                .await
                .map_err(|e| match e {
                    SendError::RecipientRejected { server, reply, .. } => {
                        SendError::RecipientRejected {
                            server,
                            recipient: (*raw).clone(),
                            reply,
                        }
                    }
                    other => other,
                })?;
        }
        self.step("DATA", conn.command(Data)).await?;
        self.end_of_data(conn, &data_lines(message)).await
    }

    /// Sends the message and its final dot, then reads the answer to it. lettre writes the body
    /// first and asks the iterator for more: when there is none, the body was written and the
    /// final dot is next, so from then on the provider may take the message without our
    /// hearing its answer.
    async fn end_of_data(
        &self,
        conn: &mut AsyncSmtpConnection,
        body: &[u8],
    ) -> Result<Response, SendError> {
        const STAGE: &str = "the end of DATA";
        let body_written = AtomicBool::new(false);
        let parts = std::iter::once(body).chain(std::iter::from_fn(|| {
            body_written.store(true, Ordering::SeqCst);
            None
        }));
        let outcome = tokio::time::timeout(self.config.timeout, conn.message_iter(parts)).await;
        let dot_sent = body_written.load(Ordering::SeqCst);
        let server = self.config.server();
        match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if dot_sent && e.status().is_none() => Err(SendError::Ambiguous {
                server,
                reason: unanswered(&e),
                timed_out: e.is_timeout(),
            }),
            Ok(Err(e)) => Err(self.error(STAGE, &e)),
            Err(_) if dot_sent => Err(SendError::Ambiguous {
                server,
                reason: format!("no answer within {} s", self.config.timeout.as_secs_f32()),
                timed_out: true,
            }),
            Err(_) => Err(SendError::Timeout {
                server,
                stage: STAGE,
                after: self.config.timeout,
            }),
        }
    }

    async fn authenticate(&self, conn: &mut AsyncSmtpConnection) -> Result<(), SendError> {
        let credentials = Credentials::new(
            self.config.username.clone(),
            self.password.expose_secret().to_owned(),
        );
        self.step(
            "AUTH",
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials),
        )
        .await?;
        Ok(())
    }

    /// Opens the implicit-TLS connection (greeting and EHLO included).
    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let server = self.config.server();
        let tls = self
            .trust
            .parameters(&self.config.host)
            .map_err(|reason| SendError::Tls { server, reason })?;
        self.step(
            "connect",
            AsyncSmtpConnection::connect_tokio1(
                (self.config.host.as_str(), self.config.port),
                Some(self.config.timeout),
                &ClientId::default(),
                Some(tls),
                None,
            ),
        )
        .await
    }

    fn error(&self, stage: &'static str, e: &lettre::transport::smtp::Error) -> SendError {
        let server = self.config.server();
        if let Some(code) = e.status() {
            let text = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let code: u16 = code.to_string().parse().unwrap_or(0);
            return classify(
                server,
                &mask_user(&self.config.username),
                stage,
                code,
                &text,
            );
        }
        let reason = chain(e);
        if e.is_timeout() {
            SendError::Timeout {
                server,
                stage,
                after: self.config.timeout,
            }
        } else if e.is_tls() || has_tls_error(e) {
            SendError::Tls { server, reason }
        } else if stage == "connect" {
            SendError::Connect { server, reason }
        } else if e.is_client() {
            SendError::Other { server, reason }
        } else {
            // The connection broke mid-exchange (reset, EOF): worth another try.
            SendError::Connect {
                server,
                reason: format!("connection lost during {stage}: {reason}"),
            }
        }
    }
}

/// How the answer to the final dot was lost, for [`SendError::Ambiguous`]. lettre reports a
/// connection closed cleanly before a complete reply as "incomplete response"; TLS without
/// `close_notify` ends in an unexpected EOF.
fn unanswered(e: &lettre::transport::smtp::Error) -> String {
    use std::io::ErrorKind;
    let reason = chain(e);
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                ErrorKind::UnexpectedEof => return "the connection was closed".to_owned(),
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::BrokenPipe => {
                    return format!("the connection was reset ({reason})");
                }
                _ => {}
            }
        }
        source = s.source();
    }
    if reason.contains("incomplete response") {
        "the connection was closed".to_owned()
    } else {
        format!("no answer could be read ({reason})")
    }
}

/// Which failure a negative SMTP reply at a given step is: a 4xx is worth another try; a
/// permanent `5.7.1` ("delivery not authorized", RFC 3463) is the provider refusing the client,
/// at whatever step, as is a 554 greeting; otherwise a refusal at RCPT is about the recipient
/// (the caller fills it in), at AUTH about the password; 552 or `5.3.4` is the size.
fn classify(server: String, user: &str, stage: &'static str, code: u16, text: &str) -> SendError {
    let reply = format!("{code} {text}").trim().to_owned();
    let enhanced = text.split_whitespace().next().unwrap_or("");
    match (code, stage, enhanced) {
        (400..=499, _, _) => SendError::Transient { server, reply },
        (_, _, "5.7.1") | (554, "connect", _) => SendError::SenderBlocked {
            server,
            user: user.to_owned(),
            reply,
        },
        (_, "RCPT TO", _) => SendError::RecipientRejected {
            server,
            recipient: String::new(),
            reply,
        },
        (_, "AUTH", _) => SendError::AuthRejected {
            server,
            user: user.to_owned(),
            reply,
        },
        (552, _, _) | (_, _, "5.3.4") => SendError::MessageTooLarge { server, reply },
        _ => SendError::Other {
            server,
            reason: format!("{stage} refused: {reply}"),
        },
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(
        &self,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<SendReceipt, SendError> {
        let server = self.config.server();
        let invalid =
            |what: &str, address: &str, e: lettre::address::AddressError| SendError::Other {
                server: server.clone(),
                reason: format!("invalid {what} address {address:?}: {e}"),
            };
        if recipients.is_empty() {
            return Err(SendError::Other {
                server,
                reason: "no recipients".to_owned(),
            });
        }
        let from: Address = envelope_from
            .parse()
            .map_err(|e| invalid("sender", envelope_from, e))?;
        let recipients = recipients
            .iter()
            .map(|r| {
                Ok((
                    r.parse::<Address>()
                        .map_err(|e| invalid("recipient", r, e))?,
                    r,
                ))
            })
            .collect::<Result<Vec<_>, SendError>>()?;
        let mut conn = self.connect().await?;
        match self.exchange(&mut conn, from, &recipients, message).await {
            Ok(response) => {
                let _ = tokio::time::timeout(self.config.timeout, conn.quit()).await;
                Ok(SendReceipt {
                    server_reply: reply_text(&response),
                })
            }
            Err(e) => {
                // A silent or broken connection would only make QUIT wait or fail.
                if !matches!(e, SendError::Timeout { .. } | SendError::Ambiguous { .. }) {
                    let _ = tokio::time::timeout(self.config.timeout, conn.quit()).await;
                }
                Err(e)
            }
        }
    }

    async fn check(&self) -> Result<(), SendError> {
        let mut conn = self.connect().await?;
        let result = self.authenticate(&mut conn).await;
        if !matches!(result, Err(SendError::Timeout { .. })) {
            let _ = tokio::time::timeout(self.config.timeout, conn.quit()).await;
        }
        result
    }
}

/// The message as DATA carries it: lines end in CRLF (a bare LF becomes CRLF), and the final
/// line break is left out because the client adds `CRLF . CRLF` itself; dot-stuffing is the
/// client's. The server then stores exactly the CRLF message it was given.
fn data_lines(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50);
    let mut previous = 0u8;
    for &b in message {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

fn reply_text(response: &Response) -> String {
    let text = response.message().collect::<Vec<_>>().join(" ");
    format!("{} {text}", response.code()).trim().to_owned()
}

/// `mario.rossi@pec.it` → `m***@pec.it`.
fn mask_user(user: &str) -> String {
    let first: String = user.chars().take(1).collect();
    match user.split_once('@') {
        Some((_, domain)) => format!("{first}***@{domain}"),
        None => format!("{first}***"),
    }
}

/// The error and its causes on one line (lettre's own message is terse: "Connection error").
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether a rustls error is behind the failure (lettre reports handshake failures as connection
/// errors wrapping an I/O error wrapping the rustls error).
fn has_tls_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Opens accounts' mailers over SMTPS with one trust configuration.
#[derive(Debug, Clone)]
pub struct SmtpProvider {
    trust: SmtpTrust,
    timeout: Duration,
}

impl SmtpProvider {
    pub fn new(trust: SmtpTrust) -> SmtpProvider {
        SmtpProvider {
            trust,
            timeout: Duration::from_secs(60),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> SmtpProvider {
        self.timeout = timeout;
        self
    }
}

impl super::MailerProvider for SmtpProvider {
    fn mailer(&self, account: &crate::domain::Account, password: SecretString) -> Box<dyn Mailer> {
        let username = account
            .username
            .clone()
            .unwrap_or_else(|| account.address.as_str().to_owned());
        let mut config = SmtpConfig::new(account.smtp.host.clone(), account.smtp.port, username);
        config.timeout = self.timeout;
        Box::new(SmtpMailer::new(config, password, self.trust.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(stage: &'static str, code: u16, text: &str) -> SendError {
        classify("smtp.test:465".into(), "m***@pec.it", stage, code, text)
    }

    #[test]
    fn replies_are_classified_by_code_and_step() {
        assert!(matches!(
            class("AUTH", 535, "5.7.8 Authentication credentials invalid"),
            SendError::AuthRejected { .. }
        ));
        assert!(matches!(
            class("AUTH", 454, "4.7.0 Temporary authentication failure"),
            SendError::Transient { .. }
        ));
        for stage in ["AUTH", "MAIL FROM", "RCPT TO"] {
            match class(stage, 554, "5.7.1 Indirizzo IP bloccato") {
                SendError::SenderBlocked { reply, .. } => {
                    assert_eq!(reply, "554 5.7.1 Indirizzo IP bloccato")
                }
                other => panic!("5.7.1 at {stage}: {other:?}"),
            }
        }
        assert!(matches!(
            class("RCPT TO", 550, "5.7.1 Client host rejected: Access denied"),
            SendError::SenderBlocked { .. }
        ));
        assert!(matches!(
            class("AUTH", 535, "5.7.8 Error: authentication failed"),
            SendError::AuthRejected { .. }
        ));
        assert!(matches!(
            class("connect", 554, "no SMTP service for you"),
            SendError::SenderBlocked { .. }
        ));
        assert!(matches!(
            class("the end of DATA", 552, "5.3.4 too big"),
            SendError::MessageTooLarge { .. }
        ));
        assert!(matches!(
            class("MAIL FROM", 550, "5.3.4 Message size exceeds limit"),
            SendError::MessageTooLarge { .. }
        ));
        assert!(matches!(
            class("RCPT TO", 550, "5.1.1 unknown user"),
            SendError::RecipientRejected { .. }
        ));
        let busy = class("MAIL FROM", 452, "4.3.1 Insufficient system storage");
        assert!(matches!(busy, SendError::Transient { .. }) && busy.is_transient());
        assert!(matches!(
            class("the end of DATA", 554, "5.6.0 bad message"),
            SendError::Other { .. }
        ));
    }

    #[test]
    fn data_is_crlf_without_the_final_line_break() {
        assert_eq!(data_lines(b"A: b\r\n\r\nbody\r\n"), b"A: b\r\n\r\nbody");
        assert_eq!(data_lines(b"A: b\n\nbody\n.x\n"), b"A: b\r\n\r\nbody\r\n.x");
        assert_eq!(data_lines(b"no break"), b"no break");
        assert_eq!(data_lines(b""), b"");
    }

    #[test]
    fn users_are_masked() {
        assert_eq!(mask_user("mario.rossi@pec.it"), "m***@pec.it");
        assert_eq!(mask_user("U12345"), "U***");
        assert_eq!(mask_user(""), "***");
    }

    /// The client's end of an in-memory connection, as lettre wants a stream.
    #[derive(Debug)]
    struct Pipe(tokio::io::DuplexStream);

    impl tokio::io::AsyncRead for Pipe {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Pipe {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl lettre::transport::smtp::client::AsyncTokioStream for Pipe {
        fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            Ok(([127, 0, 0, 1], 465).into())
        }
    }

    /// What the scripted server does once it has answered DATA with 354.
    #[derive(Clone, Copy, Debug)]
    enum AfterData {
        /// Reads a little of the message, then closes the connection.
        CloseMidMessage,
        /// Reads nothing more, ever (a large message then fills the pipe).
        StopReading,
        /// Reads the message to its final dot, then closes the connection.
        CloseAfterDot,
        /// Reads the message to its final dot, then never answers.
        SilentAfterDot,
        /// Reads the message to its final dot, then answers this.
        Reply(&'static str),
    }

    /// Plays an SMTP server up to DATA over a small in-memory pipe (1 KiB, so that a larger
    /// message cannot all be written before the server reads it), then does `after`; returns
    /// what `exchange` made of it.
    async fn exchange_with(after: AfterData, message: &[u8]) -> Result<Response, SendError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let (client, server) = tokio::io::duplex(1024);
        let server = async move {
            let (read, mut write) = tokio::io::split(server);
            let mut read = BufReader::new(read);
            write.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap() == 0 {
                    return;
                }
                let reply: &[u8] = match &line[..4] {
                    "EHLO" => b"250-test\r\n250 AUTH PLAIN LOGIN\r\n",
                    "AUTH" => b"235 2.7.0 OK\r\n",
                    "MAIL" | "RCPT" => b"250 OK\r\n",
                    "DATA" => b"354 go on\r\n",
                    _ => b"502 no\r\n",
                };
                write.write_all(reply).await.unwrap();
                if reply.starts_with(b"354") {
                    break;
                }
            }
            match after {
                AfterData::CloseMidMessage => {
                    let mut some = [0u8; 100];
                    read.read_exact(&mut some).await.unwrap();
                    return;
                }
                AfterData::StopReading => std::future::pending::<()>().await,
                _ => {}
            }
            loop {
                line.clear();
                if read.read_line(&mut line).await.unwrap() == 0 || line == ".\r\n" {
                    break;
                }
            }
            match after {
                AfterData::SilentAfterDot => std::future::pending::<()>().await,
                AfterData::Reply(text) => write.write_all(text.as_bytes()).await.unwrap(),
                _ => {}
            }
        };
        let client = async move {
            let mut conn = AsyncSmtpConnection::connect_with_transport(
                Box::new(Pipe(client)),
                &ClientId::default(),
            )
            .await
            .unwrap();
            let mut config = SmtpConfig::new("smtp.test", 465, "mario.rossi@pec.test");
            config.timeout = Duration::from_secs(5);
            let mailer = SmtpMailer::new(config, SecretString::from("pw"), SmtpTrust::webpki());
            let to = "b@pec.test".to_owned();
            mailer
                .exchange(
                    &mut conn,
                    "a@pec.test".parse().unwrap(),
                    &[(to.parse().unwrap(), &to)],
                    message,
                )
                .await
        };
        tokio::select! {
            result = client => result,
            () = async { server.await; std::future::pending().await } => unreachable!(),
        }
    }

    const SMALL: &[u8] = b"Subject: x\r\n\r\nbody\r\n";

    fn large() -> Vec<u8> {
        "Subject: x\r\n\r\nuna riga del messaggio\r\n"
            .repeat(2000)
            .into_bytes()
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_to_the_final_dot_is_ambiguous() {
        match exchange_with(AfterData::CloseAfterDot, SMALL).await {
            Err(
                e @ SendError::Ambiguous {
                    timed_out: false, ..
                },
            ) => {
                assert!(e.is_ambiguous() && e.is_transient());
                assert!(e.to_string().contains("the connection was closed"), "{e}");
            }
            other => panic!("closed after the dot: {other:?}"),
        }
        match exchange_with(AfterData::SilentAfterDot, &large()).await {
            Err(
                e @ SendError::Ambiguous {
                    timed_out: true, ..
                },
            ) => {
                assert!(e.to_string().contains("no answer within 5 s"), "{e}");
            }
            other => panic!("silent after the dot: {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_before_the_final_dot_or_an_answer_to_it_is_not_ambiguous() {
        match exchange_with(AfterData::CloseMidMessage, &large()).await {
            Err(e @ SendError::Connect { .. }) => {
                assert!(!e.is_ambiguous() && e.is_transient(), "{e}")
            }
            other => panic!("closed in the middle of the message: {other:?}"),
        }
        match exchange_with(AfterData::StopReading, &large()).await {
            Err(SendError::Timeout { stage, .. }) => assert_eq!(stage, "the end of DATA"),
            other => panic!("stuck in the middle of the message: {other:?}"),
        }
        match exchange_with(AfterData::Reply("554 5.6.0 no\r\n"), SMALL).await {
            Err(e @ SendError::Other { .. }) => assert!(!e.is_ambiguous(), "{e}"),
            other => panic!("refused after the dot: {other:?}"),
        }
        match exchange_with(AfterData::Reply("451 4.3.0 later\r\n"), SMALL).await {
            Err(e @ SendError::Transient { .. }) => assert!(!e.is_ambiguous(), "{e}"),
            other => panic!("put off after the dot: {other:?}"),
        }
        let accepted = exchange_with(AfterData::Reply("250 2.0.0 queued\r\n"), SMALL).await;
        assert_eq!(reply_text(&accepted.unwrap()), "250 2.0.0 queued");
    }

    #[test]
    fn extra_roots_must_hold_a_certificate() {
        assert!(SmtpTrust::with_extra_roots(b"not a pem").is_err());
        assert!(SmtpTrust::webpki().parameters("smtps.pec.aruba.it").is_ok());
    }
}
