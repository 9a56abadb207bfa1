//! The mailbox port: read new messages from a PEC mailbox without changing it.
//!
//! A poll opens a [`MailboxSession`], reads the INBOX status (UIDVALIDITY, UIDNEXT), lists the
//! messages above the account's cursor with their sizes, and fetches them in UID order, in
//! batches bounded by count and bytes. The session is read-only (IMAP EXAMINE, BODY.PEEK), so
//! the mailbox is left exactly as its users see it.

#[cfg(feature = "imap")]
pub mod imap;

use async_trait::async_trait;

/// The INBOX's identity and next UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStatus {
    /// Changes when the server renumbers the mailbox: every stored UID is then meaningless.
    pub uid_validity: u32,
    /// The UID the next message will get (every present message is below it).
    pub uid_next: u32,
    /// How many messages the INBOX holds.
    pub exists: u32,
}

/// A message's UID, size and arrival time, as listed before fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRef {
    pub uid: u32,
    pub size: u32,
    /// When the server received it (IMAP INTERNALDATE), if it said.
    pub arrived: Option<chrono::DateTime<chrono::Utc>>,
}

/// A fetched message: its UID and raw RFC 5322 bytes, exactly as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
}

/// Something that can open sessions on one mailbox (one per account).
#[async_trait]
pub trait Mailbox: Send + Sync {
    /// Connects, logs in and opens the INBOX read-only.
    async fn open(&self) -> Result<Box<dyn MailboxSession>, MailboxError>;
}

/// An open, read-only session on the INBOX.
#[async_trait]
pub trait MailboxSession: Send {
    /// The status read when the INBOX was opened.
    fn status(&self) -> MailboxStatus;
    /// Messages with a UID above `after`, in ascending UID order, with their sizes.
    async fn list_above(&mut self, after: u32) -> Result<Vec<MessageRef>, MailboxError>;
    /// Fetches the given messages (without setting \Seen), in ascending UID order. A UID that
    /// vanished meanwhile (expunged) is simply absent from the result.
    async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<FetchedMessage>, MailboxError>;
    /// Fetches the header section of one message only (without setting \Seen): what a message
    /// too large to fetch whole still says. `None` when the server returns nothing for it.
    async fn fetch_header(&mut self, uid: u32) -> Result<Option<Vec<u8>>, MailboxError>;
    /// Logs out (best effort).
    async fn close(self: Box<Self>);
}

/// Why the mailbox could not be read. Messages name the server and the user, never the password.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot establish TLS with {server}: {reason}")]
    Tls { server: String, reason: String },
    #[error(
        "cannot log in to {server} as {user}: the server refused the credentials ({reason}); the password may be wrong or expired, or the provider may require an app password"
    )]
    LoginRefused {
        server: String,
        user: String,
        reason: String,
    },
    #[error("{server} answered {command} with an error: {reason}")]
    Server {
        server: String,
        command: &'static str,
        reason: String,
    },
    #[error("connection to {server} lost or timed out during {command}: {reason}")]
    Io {
        server: String,
        command: &'static str,
        reason: String,
    },
}

impl MailboxError {
    /// Whether trying again later may help (network trouble), as opposed to a refusal that needs
    /// an admin (wrong password, TLS misconfiguration).
    pub fn is_transient(&self) -> bool {
        matches!(self, MailboxError::Connect { .. } | MailboxError::Io { .. })
    }

    /// Whether the credentials were refused (an admin must act: expired app password, ...).
    pub fn is_auth(&self) -> bool {
        matches!(self, MailboxError::LoginRefused { .. })
    }
}

/// Opens the mailbox of an account (the IMAP adapter in production; tests may trust a test CA).
pub trait MailboxProvider: Send + Sync {
    fn mailbox(
        &self,
        account: &crate::domain::Account,
        password: secrecy::SecretString,
    ) -> Box<dyn Mailbox>;
}
