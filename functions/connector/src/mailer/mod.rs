//! The mailer port: hand a composed PEC message to the provider's SMTP server.
//!
//! The message is raw RFC 5322 bytes, sent as they are; the envelope (MAIL FROM, RCPT TO) is
//! given apart, as SMTP wants it. A failure says plainly what went wrong ([`SendError`]),
//! whether trying again later may help ([`SendError::is_transient`]: the outbox retries those),
//! whether the message may have left all the same ([`SendError::is_ambiguous`]: the whole message
//! was sent but the provider's answer never came, so a retry must first look for its receipts),
//! and explains it to agents in Italian ([`SendError::explain_it`]).

#[cfg(feature = "smtp")]
pub mod smtp;

use std::time::Duration;

use async_trait::async_trait;

/// The server's answer to the end of DATA: the message is now the provider's responsibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// e.g. `250 2.0.0 OK queued as 4a7f...`
    pub server_reply: String,
}

/// Something that can send messages from one account.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `message` (raw RFC 5322) from `envelope_from` to every one of `recipients`, or to
    /// none: a refused recipient fails the whole send.
    async fn send(
        &self,
        envelope_from: &str,
        recipients: &[String],
        message: &[u8],
    ) -> Result<SendReceipt, SendError>;

    /// Connects, logs in and says goodbye, sending nothing: proves the host, TLS and password
    /// before an account is saved.
    async fn check(&self) -> Result<(), SendError>;
}

/// Opens the mailer of an account (the SMTP adapter in production; tests may trust a test CA).
pub trait MailerProvider: Send + Sync {
    fn mailer(
        &self,
        account: &crate::domain::Account,
        password: secrecy::SecretString,
    ) -> Box<dyn Mailer>;
}

/// Why a message could not be sent. Messages name the server and the (masked) user, never the
/// password; `reply` is the server's own answer, code and text.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(
        "cannot log in to {server} as {user}: the server refused the credentials ({reply}); the password may be wrong or expired"
    )]
    AuthRejected {
        server: String,
        user: String,
        reply: String,
    },
    #[error(
        "cannot send through {server} as {user}: the provider refuses the sending IP address ({reply})"
    )]
    SenderBlocked {
        server: String,
        user: String,
        reply: String,
    },
    #[error("cannot send through {server}: the message is too large ({reply})")]
    MessageTooLarge { server: String, reply: String },
    #[error("cannot send to {recipient} through {server}: the recipient was refused ({reply})")]
    RecipientRejected {
        server: String,
        recipient: String,
        reply: String,
    },
    #[error("cannot send through {server} now: the server asked to try again later ({reply})")]
    Transient { server: String, reply: String },
    #[error("cannot send through {server}: no answer to {stage} within {} s", .after.as_secs_f32())]
    Timeout {
        server: String,
        stage: &'static str,
        after: Duration,
    },
    /// The whole message was sent, final dot included, but the answer to it never came (the
    /// connection was closed or reset, or no answer in time): the provider may have accepted
    /// it, and the PEC may have left.
    #[error(
        "cannot confirm the send through {server}: {reason} after the whole message was sent; the provider may have accepted it"
    )]
    Ambiguous {
        server: String,
        /// How the answer was lost: `no answer within 60 s`, `the connection was closed`, `the
        /// connection was reset (...)`.
        reason: String,
        /// No answer in time, rather than a closed or broken connection.
        timed_out: bool,
    },
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
    #[error("cannot establish TLS with {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error("cannot send through {server}: {reason}")]
    Other { server: String, reason: String },
}

impl SendError {
    /// Whether trying again later may help (4xx replies, timeouts, network trouble, a send
    /// left [ambiguous](Self::is_ambiguous)), as opposed to a refusal that needs a person
    /// (password, blocked IP, size, recipient, TLS setup).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SendError::Transient { .. }
                | SendError::Timeout { .. }
                | SendError::Connect { .. }
                | SendError::Ambiguous { .. }
        )
    }

    /// Whether the message may have left even though the send failed: the provider was given
    /// all of it and never said whether it took it. Such a send is [transient](Self::is_transient)
    /// but must not simply be repeated: first make sure no receipt (accettazione) for its
    /// Message-ID arrived. Every other failure happened before the message was complete.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, SendError::Ambiguous { .. })
    }

    /// A one-paragraph explanation in Italian for the agents who see the failure on the ticket
    /// ([`crate::render::outbound::send_error`]).
    pub fn explain_it(&self) -> String {
        crate::render::outbound::send_error(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<SendError> {
        let server = || "smtps.pec.aruba.it:465".to_owned();
        vec![
            SendError::AuthRejected {
                server: server(),
                user: "m***@pec.it".into(),
                reply: "535 5.7.8 Authentication failed".into(),
            },
            SendError::SenderBlocked {
                server: server(),
                user: "m***@pec.it".into(),
                reply: "554 5.7.1 IP bloccato".into(),
            },
            SendError::MessageTooLarge {
                server: server(),
                reply: "552 5.3.4 too big".into(),
            },
            SendError::RecipientRejected {
                server: server(),
                recipient: "nessuno@pec.it".into(),
                reply: "550 5.1.1 unknown".into(),
            },
            SendError::Transient {
                server: server(),
                reply: "452 4.3.1 Insufficient system storage".into(),
            },
            SendError::Timeout {
                server: server(),
                stage: "DATA",
                after: Duration::from_secs(2),
            },
            SendError::Ambiguous {
                server: server(),
                reason: "the connection was closed".into(),
                timed_out: false,
            },
            SendError::Connect {
                server: server(),
                reason: "connection refused".into(),
            },
            SendError::Tls {
                server: server(),
                reason: "invalid peer certificate: UnknownIssuer".into(),
            },
            SendError::Other {
                server: server(),
                reason: "no common AUTH mechanism".into(),
            },
        ]
    }

    #[test]
    fn only_retryable_failures_are_transient() {
        let transient: Vec<bool> = all().iter().map(SendError::is_transient).collect();
        assert_eq!(
            transient,
            [
                false, false, false, false, true, true, true, true, false, false
            ]
        );
    }

    #[test]
    fn only_a_send_without_an_answer_to_the_whole_message_is_ambiguous() {
        let ambiguous: Vec<bool> = all().iter().map(SendError::is_ambiguous).collect();
        assert_eq!(
            ambiguous,
            [
                false, false, false, false, false, false, true, false, false, false
            ]
        );
    }

    #[test]
    fn an_ambiguous_send_is_explained_as_possibly_sent() {
        let ambiguous = |timed_out| SendError::Ambiguous {
            server: "smtps.pec.aruba.it:465".into(),
            reason: "no answer within 60 s".into(),
            timed_out,
        };
        let late = ambiguous(true);
        assert_eq!(
            late.to_string(),
            "cannot confirm the send through smtps.pec.aruba.it:465: no answer within 60 s after \
             the whole message was sent; the provider may have accepted it"
        );
        for e in [&late, &ambiguous(false)] {
            let it = e.explain_it();
            assert!(it.contains("non ha confermato l'invio"), "{it}");
            assert!(it.contains("potrebbe essere partita"), "{it}");
            assert!(it.contains("controllerà le ricevute"), "{it}");
            assert!(
                !it.contains("non è stato inviato"),
                "never says it was not sent: {it}"
            );
        }
        assert!(late.explain_it().contains("non ha risposto in tempo"));
        assert!(
            ambiguous(false)
                .explain_it()
                .contains("connessione si è interrotta")
        );
    }

    #[test]
    fn messages_are_lower_case_and_name_the_server() {
        for e in all() {
            let text = e.to_string();
            assert!(text.starts_with("cannot "), "{text}");
            assert!(text.contains("smtps.pec.aruba.it:465"), "{text}");
        }
    }

    #[test]
    fn italian_explanations_say_what_to_do() {
        let explained: Vec<String> = all().iter().map(SendError::explain_it).collect();
        assert!(explained[0].contains("password") && explained[0].contains("scadono"));
        assert!(explained[0].contains("Aruba: ogni 4 mesi"));
        assert!(explained[1].contains("blocca l'indirizzo IP"));
        assert!(
            explained[1].contains("554 5.7.1 IP bloccato"),
            "keeps the server's text"
        );
        assert!(explained[2].contains("dimensione massima"));
        assert!(explained[3].contains("nessuno@pec.it"));
        for retried in [&explained[4], &explained[5], &explained[7]] {
            assert!(retried.contains("riproverà automaticamente"), "{retried}");
        }
        assert!(explained[6].contains("potrebbe essere partita"));
        assert!(explained[8].contains("connessione sicura"));
        for e in &explained {
            assert!(!e.contains('\n') && e.len() > 80, "one paragraph: {e}");
        }
    }
}
