//! The PEC provider's IMAP server, simulated: implicit TLS (as on port 993) with the sandbox's test
//! certificate ([`crate::smtp::SANDBOX_CA_PEM`]), serving the INBOXes of a [`MailStore`].
//!
//! Commands are decoded and responses encoded with `imap-codec`; this module only decides what to
//! answer. IMAP4rev1 as real clients (the connector's `imap` crate, Thunderbird-like clients) use
//! it: CAPABILITY, NOOP, LOGOUT, LOGIN, SELECT/EXAMINE INBOX, LIST/LSUB, STATUS, CHECK, CLOSE,
//! UNSELECT, SEARCH and FETCH (sequence numbers or UIDs; ENVELOPE, BODY and BODYSTRUCTURE and
//! numbered part sections come from `structure.rs`), STORE (`\Seen` is kept, other flags are
//! accepted and forgotten) and APPEND. EXPUNGE answers NO: messages are never removed.
//!
//! Each connection works on a snapshot of the mailbox, refreshed at every command: messages
//! delivered meanwhile are announced with `* n EXISTS` before the command's own answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::num::NonZeroU32;

use chrono::Timelike as _;
use imap_codec::decode::{CommandDecodeError, Decoder as _};
use imap_codec::encode::Encoder as _;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{
    IString, Literal, LiteralMode, NString, NonEmptyVec, QuotedChar, Tag, Text,
};
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::fetch::{
    MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section,
};
use imap_codec::imap_types::flag::{
    Flag, FlagFetch, FlagNameAttribute, FlagPerm, StoreResponse, StoreType,
};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::response::{
    Capability, Code, CodeOther, CommandContinuationRequest, Data, Greeting, Response, Status,
};
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_codec::imap_types::status::{StatusDataItem, StatusDataItemName};
use imap_codec::{CommandCodec, GreetingCodec, ResponseCodec};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::listener::TlsServer;
use crate::mailstore::{MailStore, StoredMessage};

mod structure;

/// The largest literal (an APPENDed message) accepted.
pub const MAX_LITERAL: u32 = 50 * 1024 * 1024;
/// The longest command line (literals apart).
const MAX_LINE: usize = 64 * 1024;
/// Consecutive undecodable commands after which the connection is closed.
const MAX_BAD_COMMANDS: u32 = 5;

/// A running IMAP server (implicit TLS) on loopback, serving the INBOXes of a [`MailStore`].
pub struct ImapSimulator {
    server: TlsServer,
}

impl ImapSimulator {
    /// Starts on 127.0.0.1 (a free port); users log in with the store's addresses and passwords.
    pub async fn start(store: MailStore) -> Result<ImapSimulator, String> {
        let server = TlsServer::start(move |tls| {
            let store = store.clone();
            async move {
                if let Err(e) = serve(tls, store).await {
                    tracing::debug!(error = %e, "imap connection ended");
                }
            }
        })
        .await?;
        Ok(ImapSimulator { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops accepting connections (open ones end when their clients leave).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

// ----- wire -----

/// Response text: printable ASCII only, never empty.
fn text(s: &str) -> Text<'static> {
    let clean: String = s
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    let clean = clean.trim_start_matches('[').to_owned();
    Text::try_from(clean).unwrap_or_else(|_| Text::try_from("done").expect("valid text"))
}

fn code_other(s: &'static str) -> Code<'static> {
    Code::Other(CodeOther::unvalidated(s.as_bytes()))
}

fn capabilities() -> NonEmptyVec<Capability<'static>> {
    let mut caps = vec![Capability::Imap4Rev1];
    caps.extend(Capability::try_from("UNSELECT"));
    NonEmptyVec::try_from(caps).expect("not empty")
}

/// What a handler writes back.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn data(&mut self, data: Data<'_>) {
        self.0
            .extend(ResponseCodec::new().encode(&Response::Data(data)).dump());
    }

    fn status(&mut self, status: Status<'_>) {
        self.0.extend(
            ResponseCodec::new()
                .encode(&Response::Status(status))
                .dump(),
        );
    }

    fn ok(&mut self, tag: &Tag<'_>, code: Option<Code<'_>>, msg: &str) {
        self.status(Status::Ok {
            tag: Some(tag.clone()),
            code,
            text: text(msg),
        });
    }

    fn no(&mut self, tag: &Tag<'_>, code: Option<Code<'_>>, msg: &str) {
        self.status(Status::No {
            tag: Some(tag.clone()),
            code,
            text: text(msg),
        });
    }

    fn bad(&mut self, tag: Option<&Tag<'_>>, msg: &str) {
        self.status(Status::Bad {
            tag: tag.cloned(),
            code: None,
            text: text(msg),
        });
    }

    fn bye(&mut self, msg: &str) {
        self.status(Status::Bye {
            code: None,
            text: text(msg),
        });
    }
}

async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// One connection: decode commands as they arrive, answer each, until LOGOUT, EOF or abuse.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    store: MailStore,
) -> std::io::Result<()> {
    let greeting = Greeting {
        kind: imap_codec::imap_types::response::GreetingKind::Ok,
        code: Some(Code::Capability(capabilities())),
        text: text("imaps.pec.sandbox.test IMAP4rev1 sandbox ready"),
    };
    stream
        .write_all(&GreetingCodec::new().encode(&greeting).dump())
        .await?;
    let mut session = Session {
        store,
        user: None,
        selected: None,
    };
    let mut buf: Vec<u8> = Vec::new();
    // Bytes of the current command that may be buffered: a line plus its acknowledged literals.
    let mut allowance = MAX_LINE;
    // Where the current command's last literal ends (to find the end of a bad line after it).
    let mut scan_from = 0usize;
    let mut bad_in_a_row = 0u32;
    loop {
        let decoded = CommandCodec::new().decode(&buf);
        match decoded {
            Ok((remaining, command)) => {
                let consumed = buf.len() - remaining.len();
                let mut out = Out::default();
                let next = session.handle(&command, &mut out);
                stream.write_all(&out.0).await?;
                buf.drain(..consumed);
                allowance = MAX_LINE;
                scan_from = 0;
                bad_in_a_row = 0;
                if next == Next::Close {
                    stream.flush().await?;
                    let _ = stream.shutdown().await;
                    return Ok(());
                }
                continue;
            }
            Err(CommandDecodeError::LiteralFound { tag, length, mode }) => {
                if length > MAX_LITERAL {
                    let mut out = Out::default();
                    out.no(
                        &tag,
                        Some(Code::TooBig),
                        &format!("literal of {length} bytes is over the {MAX_LITERAL} limit"),
                    );
                    if mode == LiteralMode::NonSync {
                        out.bye("cannot skip an unsolicited oversized literal");
                        stream.write_all(&out.0).await?;
                        return Ok(());
                    }
                    stream.write_all(&out.0).await?;
                    buf.clear();
                    allowance = MAX_LINE;
                    scan_from = 0;
                    continue;
                }
                if mode == LiteralMode::Sync {
                    let mut out = Vec::new();
                    let ready = CommandContinuationRequest::basic(None, "ready")
                        .expect("valid continuation");
                    out.extend(
                        ResponseCodec::new()
                            .encode(&Response::CommandContinuationRequest(ready))
                            .dump(),
                    );
                    stream.write_all(&out).await?;
                }
                allowance = allowance.saturating_add(length as usize);
                scan_from = buf.len() + length as usize;
            }
            Err(CommandDecodeError::Incomplete) => {}
            Err(CommandDecodeError::Failed) => {
                let from = scan_from.min(buf.len());
                let Some(end) = buf[from..].iter().position(|b| *b == b'\n') else {
                    // Not even a whole line yet: wait for its end.
                    if buf.len() > allowance {
                        let mut out = Out::default();
                        out.bad(None, "line too long");
                        out.bye("closing");
                        stream.write_all(&out.0).await?;
                        return Ok(());
                    }
                    if read_more(&mut stream, &mut buf).await? == 0 {
                        return Ok(());
                    }
                    continue;
                };
                let line: Vec<u8> = buf.drain(..from + end + 1).collect();
                allowance = MAX_LINE;
                scan_from = 0;
                bad_in_a_row += 1;
                let mut out = Out::default();
                refuse_line(&line, &mut out);
                if bad_in_a_row >= MAX_BAD_COMMANDS {
                    out.bye("too many bad commands");
                    stream.write_all(&out.0).await?;
                    return Ok(());
                }
                stream.write_all(&out.0).await?;
                continue;
            }
        }
        if buf.len() > allowance {
            let mut out = Out::default();
            out.bad(None, "command too long");
            out.bye("closing");
            stream.write_all(&out.0).await?;
            return Ok(());
        }
        if read_more(&mut stream, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// A BAD for a line the decoder refused: tagged when its first word is a valid tag, naming the
/// command word when there is one.
fn refuse_line(line: &[u8], out: &mut Out) {
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\r' || *b == b'\n')
        .filter(|w| !w.is_empty());
    let tag = words.next().and_then(|w| Tag::try_from(w).ok());
    let name: String = words
        .next()
        .map(|w| {
            w.iter()
                .take(32)
                .filter(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b'-')
                .map(|b| b.to_ascii_uppercase() as char)
                .collect()
        })
        .unwrap_or_default();
    let msg = if tag.is_none() || name.is_empty() {
        "unreadable command".to_owned()
    } else {
        format!("unknown command or bad arguments: {name}")
    };
    out.bad(tag.as_ref(), &msg);
}

// ----- session -----

#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

struct Selected {
    read_only: bool,
    messages: Vec<StoredMessage>,
    /// The EXISTS count the client was told last.
    told: usize,
    /// How many arrived since SELECT (reported as RECENT).
    arrived: usize,
}

impl Selected {
    fn largest_uid(&self) -> u32 {
        self.messages.last().map_or(0, |m| m.uid)
    }

    /// `(sequence number, message)` named by a set of sequence numbers or UIDs.
    fn named(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, StoredMessage)> {
        let (largest_seq, largest_uid) = (self.messages.len() as u32, self.largest_uid());
        self.messages
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u32 + 1, m))
            .filter(|(seq, m)| {
                if uid {
                    in_set(set, m.uid, largest_uid)
                } else {
                    in_set(set, *seq, largest_seq)
                }
            })
            .map(|(seq, m)| (seq, m.clone()))
            .collect()
    }
}

struct Session {
    store: MailStore,
    user: Option<String>,
    selected: Option<Selected>,
}

fn seq_value(v: &SeqOrUid, largest: u32) -> u32 {
    match v {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    }
}

/// Whether `n` is in the set, `*` being `largest` (so `5:*` names the largest even when below 5).
fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(v) => seq_value(v, largest) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (seq_value(a, largest), seq_value(b, largest));
            a.min(b) <= n && n <= a.max(b)
        }
    })
}

fn is_inbox(mailbox: &Mailbox<'_>) -> bool {
    match mailbox {
        Mailbox::Inbox => true,
        Mailbox::Other(other) => other.inner().as_ref().eq_ignore_ascii_case(b"inbox"),
    }
}

fn mailbox_name(mailbox: &Mailbox<'_>) -> String {
    match mailbox {
        Mailbox::Inbox => "INBOX".to_owned(),
        Mailbox::Other(other) => String::from_utf8_lossy(other.inner().as_ref()).into_owned(),
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn flags_of(seen: bool) -> Vec<FlagFetch<'static>> {
    if seen {
        vec![FlagFetch::Flag(Flag::Seen)]
    } else {
        Vec::new()
    }
}

/// A literal in a FETCH answer. IMAP4rev1 literals cannot carry NUL (that needs BINARY), so a
/// NUL in a stored message goes out as a space (the size stays right).
fn literal(mut bytes: Vec<u8>) -> NString<'static> {
    for b in bytes.iter_mut().filter(|b| **b == 0) {
        *b = b' ';
    }
    NString(Some(IString::Literal(Literal::unvalidated(bytes))))
}

impl Session {
    fn handle(&mut self, command: &Command<'_>, out: &mut Out) -> Next {
        let tag = &command.tag;
        match &command.body {
            CommandBody::Capability => {
                out.data(Data::Capability(capabilities()));
                out.ok(tag, None, "CAPABILITY completed");
            }
            CommandBody::Noop => {
                self.refresh(out);
                out.ok(tag, None, "NOOP completed");
            }
            CommandBody::Logout => {
                out.bye("logging out");
                out.ok(tag, None, "LOGOUT completed");
                return Next::Close;
            }
            CommandBody::Login { username, password } => {
                let user = String::from_utf8_lossy(username.as_ref()).into_owned();
                let password = String::from_utf8_lossy(password.declassify().as_ref()).into_owned();
                if self.user.is_some() {
                    out.bad(Some(tag), "already logged in");
                } else if self.store.check_login(&user, &password) {
                    tracing::debug!(user = %user, "imap login");
                    self.user = Some(user);
                    out.ok(
                        tag,
                        Some(Code::Capability(capabilities())),
                        "LOGIN completed",
                    );
                } else {
                    out.no(
                        tag,
                        Some(code_other("AUTHENTICATIONFAILED")),
                        "invalid user name or password",
                    );
                }
            }
            CommandBody::Authenticate { .. } => {
                out.no(tag, None, "AUTHENTICATE is not supported here: use LOGIN");
            }
            body if self.user.is_none() => {
                out.bad(Some(tag), &format!("{} needs a login first", body.name()));
            }
            CommandBody::Select { mailbox } => self.select(tag, mailbox, false, out),
            CommandBody::Examine { mailbox } => self.select(tag, mailbox, true, out),
            CommandBody::List {
                mailbox_wildcard, ..
            } => {
                self.list(mailbox_wildcard, false, out);
                out.ok(tag, None, "LIST completed");
            }
            CommandBody::Lsub {
                mailbox_wildcard, ..
            } => {
                self.list(mailbox_wildcard, true, out);
                out.ok(tag, None, "LSUB completed");
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => self.status(tag, mailbox, item_names, out),
            CommandBody::Append {
                mailbox,
                flags,
                message,
                ..
            } => self.append(tag, mailbox, flags, message.data(), out),
            body if self.selected.is_none() => {
                out.bad(
                    Some(tag),
                    &format!("{} needs a selected mailbox", body.name()),
                );
            }
            CommandBody::Check => {
                self.refresh(out);
                out.ok(tag, None, "CHECK completed");
            }
            CommandBody::Close | CommandBody::Unselect => {
                self.selected = None;
                out.ok(tag, None, &format!("{} completed", command.body.name()));
            }
            CommandBody::Expunge => {
                self.refresh(out);
                out.no(
                    tag,
                    None,
                    "EXPUNGE is not supported: messages are never removed",
                );
            }
            CommandBody::Search { criteria, uid, .. } => {
                self.refresh(out);
                self.search(tag, criteria, *uid, out);
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
            } => {
                self.refresh(out);
                self.fetch(tag, sequence_set, macro_or_item_names, *uid, out);
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
            } => {
                self.refresh(out);
                self.store_flags(tag, sequence_set, kind, response, flags, *uid, out);
            }
            other => {
                out.bad(Some(tag), &format!("{} is not supported", other.name()));
            }
        }
        Next::Continue
    }

    fn user(&self) -> &str {
        self.user.as_deref().unwrap_or_default()
    }

    /// Takes a fresh snapshot; announces messages that arrived since the client was last told.
    fn refresh(&mut self, out: &mut Out) {
        let Some(snapshot) = self.store.snapshot(self.user()) else {
            return;
        };
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        selected.messages = snapshot.messages;
        if selected.messages.len() > selected.told {
            selected.arrived += selected.messages.len() - selected.told;
            selected.told = selected.messages.len();
            out.data(Data::Exists(selected.told as u32));
            out.data(Data::Recent(selected.arrived as u32));
        }
    }

    fn select(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, read_only: bool, out: &mut Out) {
        self.selected = None;
        let snapshot = if is_inbox(mailbox) {
            self.store.snapshot(self.user())
        } else {
            None
        };
        let Some(snapshot) = snapshot else {
            let name = mailbox_name(mailbox);
            out.no(
                tag,
                Some(code_other("NONEXISTENT")),
                &format!("no mailbox named {name}"),
            );
            return;
        };
        let exists = snapshot.messages.len() as u32;
        out.data(Data::Flags(vec![
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Seen,
            Flag::Draft,
        ]));
        out.data(Data::Exists(exists));
        out.data(Data::Recent(0));
        if let Some(first) = snapshot.messages.iter().position(|m| !m.seen) {
            out.status(Status::Ok {
                tag: None,
                code: Some(Code::Unseen(nonzero(first as u32 + 1))),
                text: text("first unseen"),
            });
        }
        let permanent = if read_only {
            Vec::new()
        } else {
            vec![FlagPerm::Flag(Flag::Seen)]
        };
        out.status(Status::Ok {
            tag: None,
            code: Some(Code::PermanentFlags(permanent)),
            text: text("flags permitted"),
        });
        out.status(Status::Ok {
            tag: None,
            code: Some(Code::UidValidity(nonzero(snapshot.uid_validity))),
            text: text("UIDs valid"),
        });
        out.status(Status::Ok {
            tag: None,
            code: Some(Code::UidNext(nonzero(snapshot.uid_next))),
            text: text("predicted next UID"),
        });
        let (code, verb) = if read_only {
            (Code::ReadOnly, "EXAMINE")
        } else {
            (Code::ReadWrite, "SELECT")
        };
        out.ok(tag, Some(code), &format!("{verb} completed"));
        self.selected = Some(Selected {
            read_only,
            told: snapshot.messages.len(),
            messages: snapshot.messages,
            arrived: 0,
        });
    }

    fn list(&self, pattern: &ListMailbox<'_>, lsub: bool, out: &mut Out) {
        let pattern: Vec<u8> = match pattern {
            ListMailbox::Token(t) => t.as_ref().to_vec(),
            ListMailbox::String(s) => s.clone().into_inner().into_owned(),
        };
        let delimiter = QuotedChar::try_from('/').ok();
        if pattern.is_empty() {
            // The hierarchy delimiter and root.
            if let Ok(root) = Mailbox::try_from("") {
                let items = vec![FlagNameAttribute::Noselect];
                out.data(if lsub {
                    Data::Lsub {
                        items,
                        delimiter,
                        mailbox: root,
                    }
                } else {
                    Data::List {
                        items,
                        delimiter,
                        mailbox: root,
                    }
                });
            }
            return;
        }
        if glob(&pattern.to_ascii_lowercase(), b"inbox") {
            let items = Vec::new();
            let mailbox = Mailbox::Inbox;
            out.data(if lsub {
                Data::Lsub {
                    items,
                    delimiter,
                    mailbox,
                }
            } else {
                Data::List {
                    items,
                    delimiter,
                    mailbox,
                }
            });
        }
    }

    fn status(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        names: &[StatusDataItemName],
        out: &mut Out,
    ) {
        let snapshot = if is_inbox(mailbox) {
            self.store.snapshot(self.user())
        } else {
            None
        };
        let Some(snapshot) = snapshot else {
            let name = mailbox_name(mailbox);
            out.no(
                tag,
                Some(code_other("NONEXISTENT")),
                &format!("no mailbox named {name}"),
            );
            return;
        };
        let items: Vec<StatusDataItem> = names
            .iter()
            .filter_map(|name| match name {
                StatusDataItemName::Messages => {
                    Some(StatusDataItem::Messages(snapshot.messages.len() as u32))
                }
                StatusDataItemName::Recent => Some(StatusDataItem::Recent(0)),
                StatusDataItemName::UidNext => {
                    Some(StatusDataItem::UidNext(nonzero(snapshot.uid_next)))
                }
                StatusDataItemName::UidValidity => {
                    Some(StatusDataItem::UidValidity(nonzero(snapshot.uid_validity)))
                }
                StatusDataItemName::Unseen => Some(StatusDataItem::Unseen(
                    snapshot.messages.iter().filter(|m| !m.seen).count() as u32,
                )),
                StatusDataItemName::Deleted => Some(StatusDataItem::Deleted(0)),
                _ => None,
            })
            .collect();
        out.data(Data::Status {
            mailbox: Mailbox::Inbox,
            items: Cow::Owned(items),
        });
        out.ok(tag, None, "STATUS completed");
    }

    fn append(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        message: &[u8],
        out: &mut Out,
    ) {
        if !is_inbox(mailbox) {
            let name = mailbox_name(mailbox);
            out.no(
                tag,
                Some(Code::TryCreate),
                &format!("no mailbox named {name}"),
            );
            return;
        }
        let user = self.user().to_owned();
        match self.store.deliver(&user, message.to_vec()) {
            Some(uid) => {
                if flags.contains(&Flag::Seen) {
                    self.store.set_seen(&user, uid, true);
                }
                tracing::debug!(user = %user, uid, "imap append");
                out.ok(tag, None, "APPEND completed");
            }
            None => out.no(tag, None, "the mailbox is gone"),
        }
    }

    fn search(&mut self, tag: &Tag<'_>, criteria: &SearchKey<'_>, uid: bool, out: &mut Out) {
        let Some(selected) = self.selected.as_ref() else {
            return;
        };
        let ctx = SearchContext {
            largest_seq: selected.messages.len() as u32,
            largest_uid: selected.largest_uid(),
        };
        let mut found = Vec::new();
        for (i, m) in selected.messages.iter().enumerate() {
            let seq = i as u32 + 1;
            match ctx.matches(criteria, seq, m) {
                Ok(true) => found.push(nonzero(if uid { m.uid } else { seq })),
                Ok(false) => {}
                Err(key) => {
                    out.no(tag, None, &format!("SEARCH key {key} is not supported"));
                    return;
                }
            }
        }
        out.data(Data::Search(found));
        out.ok(tag, None, "SEARCH completed");
    }

    fn fetch(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        what: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        out: &mut Out,
    ) {
        let names: Vec<MessageDataItemName<'_>> = match what {
            MacroOrMessageDataItemNames::Macro(m) => m.expand(),
            MacroOrMessageDataItemNames::MessageDataItemNames(names) => names.clone(),
        };
        let user = self.user().to_owned();
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        let mut responses = Vec::new();
        for (seq, mut m) in selected.named(set, uid) {
            let marks_seen = !selected.read_only
                && !m.seen
                && names.iter().any(|n| {
                    matches!(
                        n,
                        MessageDataItemName::BodyExt { peek: false, .. }
                            | MessageDataItemName::Rfc822
                            | MessageDataItemName::Rfc822Text
                    )
                });
            if marks_seen {
                self.store.set_seen(&user, m.uid, true);
                m.seen = true;
                if let Some(kept) = selected.messages.get_mut(seq as usize - 1) {
                    kept.seen = true;
                }
            }
            let mut items = Vec::new();
            if uid && !names.contains(&MessageDataItemName::Uid) {
                items.push(MessageDataItem::Uid(nonzero(m.uid)));
            }
            for name in &names {
                match fetch_item(name, &m) {
                    Ok(item) => items.push(item),
                    Err(reason) => {
                        out.bad(Some(tag), &reason);
                        return;
                    }
                }
            }
            if marks_seen && !names.contains(&MessageDataItemName::Flags) {
                items.push(MessageDataItem::Flags(flags_of(true)));
            }
            if let Ok(items) = NonEmptyVec::try_from(items) {
                responses.push(Data::Fetch {
                    seq: nonzero(seq),
                    items,
                });
            }
        }
        for data in responses {
            out.data(data);
        }
        out.ok(
            tag,
            None,
            &format!("{}FETCH completed", if uid { "UID " } else { "" }),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn store_flags(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        out: &mut Out,
    ) {
        let user = self.user().to_owned();
        let Some(selected) = self.selected.as_mut() else {
            return;
        };
        if selected.read_only {
            out.no(
                tag,
                Some(Code::ReadOnly),
                "the mailbox is read-only (EXAMINE)",
            );
            return;
        }
        let with_seen = flags.contains(&Flag::Seen);
        for (seq, m) in selected.named(set, uid) {
            let seen = match kind {
                StoreType::Add => m.seen || with_seen,
                StoreType::Remove => m.seen && !with_seen,
                StoreType::Replace => with_seen,
            };
            if seen != m.seen {
                self.store.set_seen(&user, m.uid, seen);
                if let Some(kept) = selected.messages.get_mut(seq as usize - 1) {
                    kept.seen = seen;
                }
            }
            if *response == StoreResponse::Answer {
                let mut items = vec![MessageDataItem::Flags(flags_of(seen))];
                if uid {
                    items.insert(0, MessageDataItem::Uid(nonzero(m.uid)));
                }
                if let Ok(items) = NonEmptyVec::try_from(items) {
                    out.data(Data::Fetch {
                        seq: nonzero(seq),
                        items,
                    });
                }
            }
        }
        out.ok(
            tag,
            None,
            &format!("{}STORE completed", if uid { "UID " } else { "" }),
        );
    }
}

/// `*` and `%` over a mailbox name (there is no hierarchy: both match anything). Linear in
/// the name for each wildcard: a pattern of many wildcards cannot blow up.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The last wildcard seen and the name position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*' | b'%') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| matches!(c, b'*' | b'%'))
}

// ----- message parts -----

/// The header (with its blank line) and the text of a message.
fn split_message(raw: &[u8]) -> (&[u8], &[u8]) {
    raw.split_at(structure::header_end(raw))
}

/// Header fields as `(name, whole field with its continuation lines)`.
fn header_fields(header: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut starts: Vec<usize> = (0..header.len())
        .filter(|&i| {
            (i == 0 || header[i - 1] == b'\n') && !matches!(header[i], b' ' | b'\t' | b'\r' | b'\n')
        })
        .collect();
    starts.push(header.len());
    starts
        .windows(2)
        .map(|pair| {
            let mut field = &header[pair[0]..pair[1]];
            // The last field is followed by the blank line that ends the header.
            while let Some(shorter) = field
                .strip_suffix(b"\r\n")
                .filter(|f| f.ends_with(b"\n"))
                .or_else(|| field.strip_suffix(b"\n").filter(|f| f.ends_with(b"\n")))
            {
                field = shorter;
            }
            let name_end = field.iter().position(|b| *b == b':').unwrap_or(0);
            (&field[..name_end], field)
        })
        .collect()
}

fn field_value(field: &[u8]) -> &[u8] {
    let colon = field
        .iter()
        .position(|b| *b == b':')
        .map_or(field.len(), |i| i + 1);
    &field[colon..]
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() {
        return true;
    }
    let (haystack, needle) = (haystack.to_ascii_lowercase(), needle.to_ascii_lowercase());
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_slice())
}

fn select_fields(header: &[u8], names: &[&[u8]], keep: bool) -> Vec<u8> {
    let mut picked: Vec<u8> = Vec::new();
    for (name, field) in header_fields(header) {
        if names.iter().any(|n| n.eq_ignore_ascii_case(name)) == keep && !name.is_empty() {
            picked.extend_from_slice(field);
        }
    }
    picked.extend_from_slice(b"\r\n");
    picked
}

fn fetch_item(
    name: &MessageDataItemName<'_>,
    m: &StoredMessage,
) -> Result<MessageDataItem<'static>, String> {
    let raw = m.raw.as_slice();
    Ok(match name {
        MessageDataItemName::Uid => MessageDataItem::Uid(nonzero(m.uid)),
        MessageDataItemName::Flags => MessageDataItem::Flags(flags_of(m.seen)),
        MessageDataItemName::Rfc822Size => MessageDataItem::Rfc822Size(raw.len() as u32),
        MessageDataItemName::InternalDate => {
            let date = m
                .internal_date
                .with_nanosecond(0)
                .unwrap_or(m.internal_date);
            let date = DateTime::try_from(date)
                .or_else(|_| DateTime::try_from(date.to_utc().fixed_offset()))
                .map_err(|e| format!("cannot send INTERNALDATE {date}: {e}"))?;
            MessageDataItem::InternalDate(date)
        }
        MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(raw.to_vec())),
        MessageDataItemName::Envelope => MessageDataItem::Envelope(structure::envelope(raw)),
        MessageDataItemName::Body => MessageDataItem::Body(structure::body_structure(raw, false)),
        MessageDataItemName::BodyStructure => {
            MessageDataItem::BodyStructure(structure::body_structure(raw, true))
        }
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(literal(split_message(raw).0.to_vec()))
        }
        MessageDataItemName::Rfc822Text => {
            MessageDataItem::Rfc822Text(literal(split_message(raw).1.to_vec()))
        }
        MessageDataItemName::BodyExt {
            section, partial, ..
        } => {
            let mut bytes = structure::section(raw, section.as_ref());
            let origin = partial.map(|(start, len)| {
                let start = (start as usize).min(bytes.len());
                let end = start.saturating_add(len.get() as usize).min(bytes.len());
                bytes = bytes[start..end].to_vec();
                start as u32
            });
            MessageDataItem::BodyExt {
                section: section.clone().map(|s| to_static_section(&s)),
                origin,
                data: literal(bytes),
            }
        }
    })
}

/// Copies a section name out of the command buffer.
fn to_static_section(section: &Section<'_>) -> Section<'static> {
    use imap_codec::imap_types::core::AString;
    let names = |names: &NonEmptyVec<imap_codec::imap_types::core::AString<'_>>| {
        let owned: Vec<AString<'static>> = names
            .as_ref()
            .iter()
            .filter_map(|n| AString::try_from(n.as_ref().to_vec()).ok())
            .collect();
        NonEmptyVec::try_from(owned)
            .unwrap_or_else(|_| NonEmptyVec::from(AString::try_from("X").expect("valid atom")))
    };
    match section {
        Section::Part(p) => Section::Part(p.clone()),
        Section::Header(p) => Section::Header(p.clone()),
        Section::HeaderFields(p, n) => Section::HeaderFields(p.clone(), names(n)),
        Section::HeaderFieldsNot(p, n) => Section::HeaderFieldsNot(p.clone(), names(n)),
        Section::Text(p) => Section::Text(p.clone()),
        Section::Mime(p) => Section::Mime(p.clone()),
    }
}

// ----- search -----

struct SearchContext {
    largest_seq: u32,
    largest_uid: u32,
}

impl SearchContext {
    /// Whether message `seq` matches; `Err(key name)` for a key this server does not evaluate.
    fn matches(&self, key: &SearchKey<'_>, seq: u32, m: &StoredMessage) -> Result<bool, String> {
        let raw = m.raw.as_slice();
        let header_has = |name: &[u8], value: &[u8]| {
            header_fields(split_message(raw).0)
                .into_iter()
                .any(|(n, f)| {
                    n.eq_ignore_ascii_case(name) && contains_ignore_case(field_value(f), value)
                })
        };
        let date = m.internal_date.date_naive();
        Ok(match key {
            SearchKey::And(keys) => {
                for k in keys.as_ref() {
                    if !self.matches(k, seq, m)? {
                        return Ok(false);
                    }
                }
                true
            }
            SearchKey::Or(a, b) => self.matches(a, seq, m)? || self.matches(b, seq, m)?,
            SearchKey::Not(k) => !self.matches(k, seq, m)?,
            SearchKey::All => true,
            SearchKey::SequenceSet(set) => in_set(set, seq, self.largest_seq),
            SearchKey::Uid(set) => in_set(set, m.uid, self.largest_uid),
            SearchKey::Seen => m.seen,
            SearchKey::Unseen => !m.seen,
            SearchKey::Answered
            | SearchKey::Deleted
            | SearchKey::Draft
            | SearchKey::Flagged
            | SearchKey::Recent
            | SearchKey::New
            | SearchKey::Keyword(_) => false,
            SearchKey::Unanswered
            | SearchKey::Undeleted
            | SearchKey::Undraft
            | SearchKey::Unflagged
            | SearchKey::Old
            | SearchKey::Unkeyword(_) => true,
            SearchKey::Larger(n) => raw.len() as u64 > u64::from(*n),
            SearchKey::Smaller(n) => (raw.len() as u64) < u64::from(*n),
            SearchKey::Before(d) => date < *d.as_ref(),
            SearchKey::On(d) => date == *d.as_ref(),
            SearchKey::Since(d) => date >= *d.as_ref(),
            SearchKey::Subject(v) => header_has(b"subject", v.as_ref()),
            SearchKey::From(v) => header_has(b"from", v.as_ref()),
            SearchKey::To(v) => header_has(b"to", v.as_ref()),
            SearchKey::Cc(v) => header_has(b"cc", v.as_ref()),
            SearchKey::Bcc(v) => header_has(b"bcc", v.as_ref()),
            SearchKey::Header(name, v) => header_has(name.as_ref(), v.as_ref()),
            SearchKey::Body(v) => contains_ignore_case(split_message(raw).1, v.as_ref()),
            SearchKey::Text(v) => contains_ignore_case(raw, v.as_ref()),
            other => {
                let name = format!("{other:?}");
                let name = name
                    .split(['(', ' '])
                    .next()
                    .unwrap_or("?")
                    .to_ascii_uppercase();
                return Err(name);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    use super::*;

    #[test]
    fn glob_matches_wildcards_without_blowing_up() {
        assert!(glob(b"*", b"INBOX"));
        assert!(glob(b"%", b"INBOX"));
        assert!(glob(b"IN*", b"INBOX"));
        assert!(glob(b"*B*X", b"INBOX"));
        assert!(glob(b"INBOX", b"INBOX"));
        assert!(!glob(b"INBOX", b"INBO"));
        assert!(!glob(b"*Y", b"INBOX"));
        assert!(!glob(b"", b"INBOX"));
        let many = "*a".repeat(30_000) + "*b";
        let started = std::time::Instant::now();
        assert!(!glob(many.as_bytes(), b"INBOX"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    const USER: &str = "protocollo@pec.sandbox.test";

    struct Client {
        stream: TlsStream<tokio::net::TcpStream>,
        buf: Vec<u8>,
    }

    impl Client {
        async fn connect(sim: &ImapSimulator) -> (Client, String) {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(crate::smtp::SANDBOX_CA_PEM.as_bytes()) {
                roots.add(cert.unwrap()).unwrap();
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
            let stream = TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let mut client = Client {
                stream,
                buf: Vec::new(),
            };
            let greeting = client.until(|b| b.ends_with(b"\r\n")).await;
            (client, greeting)
        }

        /// Reads until `done` holds for what was received; returns it (and forgets it).
        async fn until(&mut self, done: impl Fn(&[u8]) -> bool) -> String {
            let deadline = std::time::Duration::from_secs(5);
            while !done(&self.buf) {
                let mut chunk = [0u8; 8192];
                let n = tokio::time::timeout(deadline, self.stream.read(&mut chunk))
                    .await
                    .expect("server answers in time")
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.unwrap();
        }

        /// Sends `tag command` and reads through the tagged answer.
        async fn cmd(&mut self, tag: &str, command: &str) -> String {
            self.send(format!("{tag} {command}\r\n").as_bytes()).await;
            let end = format!("{tag} ");
            self.until(|b| {
                let text = String::from_utf8_lossy(b);
                text.ends_with("\r\n")
                    && (text.starts_with(&end) || text.contains(&format!("\r\n{end}")))
            })
            .await
        }
    }

    fn message(n: u32) -> Vec<u8> {
        format!(
            "From: mittente{n}@example.it\r\nTo: {USER}\r\nSubject: messaggio {n}\r\n\
             X-Long: uno\r\n due\r\n\r\ncorpo {n}\r\n"
        )
        .into_bytes()
    }

    async fn with_messages(n: u32) -> (MailStore, ImapSimulator) {
        let store = MailStore::new();
        store.add_user(USER, "segreta");
        for i in 1..=n {
            store.deliver(USER, message(i));
        }
        let sim = ImapSimulator::start(store.clone()).await.unwrap();
        (store, sim)
    }

    async fn logged_in(sim: &ImapSimulator) -> Client {
        let (mut c, _) = Client::connect(sim).await;
        let r = c.cmd("l", &format!("LOGIN {USER} segreta")).await;
        assert!(r.contains("l OK"), "{r}");
        c
    }

    fn seen(store: &MailStore) -> Vec<bool> {
        let snapshot = store.snapshot(USER).unwrap();
        snapshot.messages.iter().map(|m| m.seen).collect()
    }

    #[tokio::test]
    async fn greets_with_capabilities_and_logs_out_with_bye() {
        let (_, sim) = with_messages(0).await;
        let (mut c, greeting) = Client::connect(&sim).await;
        assert!(
            greeting
                .to_ascii_uppercase()
                .starts_with("* OK [CAPABILITY IMAP4REV1"),
            "{greeting}"
        );
        let r = c.cmd("a", "CAPABILITY").await;
        assert!(
            r.to_ascii_uppercase().starts_with("* CAPABILITY IMAP4REV1"),
            "{r}"
        );
        assert!(!r.contains("STARTTLS"), "{r}");
        assert!(r.contains("a OK"), "{r}");
        let r = c.cmd("b", "NOOP").await;
        assert!(r.starts_with("b OK"), "{r}");
        let r = c.cmd("c", "LOGOUT").await;
        assert!(r.starts_with("* BYE"), "{r}");
        assert!(r.contains("c OK"), "{r}");
        assert_eq!(c.until(|_| false).await, "", "closed after LOGOUT");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_and_nothing_works_before_login() {
        let (_, sim) = with_messages(1).await;
        let (mut c, _) = Client::connect(&sim).await;
        let r = c.cmd("a", &format!("LOGIN {USER} sbagliata")).await;
        assert!(r.starts_with("a NO [AUTHENTICATIONFAILED]"), "{r}");
        let r = c.cmd("b", "SELECT INBOX").await;
        assert!(r.starts_with("b BAD"), "{r}");
        let r = c.cmd("c", "UID FETCH 1:* (UID)").await;
        assert!(r.starts_with("c BAD"), "{r}");
        let r = c
            .cmd(
                "d",
                &format!("LOGIN \"{}\" \"segreta\"", USER.to_uppercase()),
            )
            .await;
        assert!(r.contains("d OK"), "user names are case-insensitive: {r}");
    }

    #[tokio::test]
    async fn select_reports_the_mailbox_and_other_names_do_not_exist() {
        let (store, sim) = with_messages(2).await;
        store.set_seen(USER, 1, true);
        let mut c = logged_in(&sim).await;
        let r = c.cmd("a", "SELECT inbox").await;
        let validity = store.snapshot(USER).unwrap().uid_validity;
        for expected in [
            "* FLAGS (".to_owned(),
            "* 2 EXISTS".to_owned(),
            "* 0 RECENT".to_owned(),
            "* OK [UNSEEN 2]".to_owned(),
            format!("* OK [UIDVALIDITY {validity}]"),
            "* OK [UIDNEXT 3]".to_owned(),
            "* OK [PERMANENTFLAGS (\\Seen)]".to_owned(),
            "a OK [READ-WRITE]".to_owned(),
        ] {
            assert!(r.contains(&expected), "{expected} missing in {r}");
        }
        let r = c.cmd("b", "SELECT Archivio").await;
        assert!(r.starts_with("b NO [NONEXISTENT]"), "{r}");
        let r = c.cmd("c", "LIST \"\" \"*\"").await;
        assert!(r.contains("* LIST () \"/\" INBOX"), "{r}");
        let r = c
            .cmd(
                "d",
                "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)",
            )
            .await;
        assert!(
            r.contains(&format!(
                "* STATUS INBOX (MESSAGES 2 UIDNEXT 3 UIDVALIDITY {validity} UNSEEN 1 RECENT 0)"
            )),
            "{r}"
        );
    }

    #[tokio::test]
    async fn uid_fetch_n_star_always_names_the_highest_message() {
        let (_, sim) = with_messages(3).await;
        let mut c = logged_in(&sim).await;
        c.cmd("a", "EXAMINE INBOX").await;
        let r = c.cmd("b", "UID FETCH 10:* (FLAGS)").await;
        assert!(r.starts_with("* 3 FETCH (UID 3 FLAGS ())"), "{r}");
        assert_eq!(r.matches(" FETCH (").count(), 1, "{r}");
        let r = c.cmd("c", "UID FETCH 2:* (UID RFC822.SIZE)").await;
        let size = message(2).len();
        assert!(
            r.contains(&format!("* 2 FETCH (UID 2 RFC822.SIZE {size})")),
            "{r}"
        );
        assert!(r.contains("* 3 FETCH (UID 3 "), "{r}");
        assert!(!r.contains("* 1 FETCH"), "{r}");
        let r = c.cmd("d", "FETCH 1,3 (UID INTERNALDATE)").await;
        assert!(r.contains("* 1 FETCH (UID 1 INTERNALDATE \""), "{r}");
        assert!(r.contains("* 3 FETCH (UID 3 INTERNALDATE \""), "{r}");
        let r = c
            .cmd(
                "e",
                "UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT])",
            )
            .await;
        assert!(r.contains("Subject: messaggio 1\r\n\r\n"), "{r}");
        assert!(r.contains("BODY[TEXT] {9}\r\ncorpo 1\r\n"), "{r}");
        let r = c.cmd("f", "UID FETCH 1 (BODY[]<0.4>)").await;
        assert!(r.contains("BODY[]<0> {4}\r\nFrom"), "{r}");
        let r = c.cmd("g", "FETCH 1 (BODYSTRUCTURE)").await;
        assert!(r.starts_with("* 1 FETCH (BODYSTRUCTURE ("), "{r}");
    }

    const ENVELOPE_1: &str = "ENVELOPE (NIL \"messaggio 1\" \
        ((NIL NIL \"mittente1\" \"example.it\")) ((NIL NIL \"mittente1\" \"example.it\")) \
        ((NIL NIL \"mittente1\" \"example.it\")) ((NIL NIL \"protocollo\" \"pec.sandbox.test\")) \
        NIL NIL NIL NIL)";

    #[tokio::test]
    async fn fetch_envelope_body_structure_and_the_all_and_full_macros() {
        let (_, sim) = with_messages(1).await;
        let mut c = logged_in(&sim).await;
        c.cmd("a", "EXAMINE INBOX").await;
        let r = c.cmd("b", "FETCH 1 (ENVELOPE BODYSTRUCTURE)").await;
        assert_eq!(
            r,
            format!(
                "* 1 FETCH ({ENVELOPE_1} BODYSTRUCTURE (\"TEXT\" \"plain\" \
                 (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 1 NIL NIL NIL NIL))\r\n\
                 b OK FETCH completed\r\n"
            )
        );
        let r = c.cmd("c", "FETCH 1 ALL").await;
        let size = message(1).len();
        assert!(r.starts_with("* 1 FETCH (FLAGS () INTERNALDATE \""), "{r}");
        assert!(
            r.contains(&format!(" RFC822.SIZE {size} {ENVELOPE_1})\r\nc OK")),
            "{r}"
        );
        let r = c.cmd("d", "UID FETCH 1 FULL").await;
        assert!(
            r.starts_with("* 1 FETCH (UID 1 FLAGS () INTERNALDATE \""),
            "{r}"
        );
        assert!(
            r.contains(&format!(
                " RFC822.SIZE {size} {ENVELOPE_1} BODY (\"TEXT\" \"plain\" \
                 (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 9 1))\r\nd OK"
            )),
            "{r}"
        );
        let r = c.cmd("e", "FETCH 1 (BODY[1] BODY[1.MIME] BODY[2])").await;
        assert!(
            r.contains("BODY[1] {9}\r\ncorpo 1\r\n BODY[1.MIME] {"),
            "part 1 of a single-part message is its body: {r}"
        );
        assert!(r.contains(" BODY[2] {0}\r\n)"), "{r}");
    }

    #[tokio::test]
    async fn fetch_parts_of_a_pec_busta() {
        use structure::tests::{POSTACERT, SIGNATURE, mixed, pec};
        let (store, sim) = with_messages(0).await;
        store.deliver(USER, pec().into_bytes());
        store.deliver(
            USER,
            format!(
                "From: a@pec.it\r\nSubject: busta\r\nMIME-Version: 1.0\r\n{}",
                mixed()
            )
            .into_bytes(),
        );
        let mut c = logged_in(&sim).await;
        c.cmd("a", "SELECT INBOX").await;
        let r = c.cmd("b", "UID FETCH 1 (BODYSTRUCTURE)").await;
        assert!(
            r.starts_with("* 1 FETCH (UID 1 BODYSTRUCTURE (((\"TEXT\" \"plain\""),
            "{r}"
        );
        assert!(
            r.contains(" \"mixed\" (\"boundary\" \"M1\") NIL NIL NIL)("),
            "{r}"
        );
        assert!(r.contains(" \"signed\" (\"protocol\" "), "{r}");

        let (header, text) = POSTACERT.split_at(POSTACERT.find("\r\n\r\n").unwrap() + 4);
        let r = c.cmd("c", "FETCH 2 (BODY.PEEK[3.HEADER])").await;
        assert!(
            r.starts_with(&format!(
                "* 2 FETCH (BODY[3.HEADER] {{{}}}\r\n{header})\r\nc OK",
                header.len()
            )),
            "{r}"
        );
        let r = c
            .cmd("d", "FETCH 2 (BODY.PEEK[1.MIME] BODY.PEEK[3.TEXT]<6.14>)")
            .await;
        assert!(
            r.contains(
                "BODY[1.MIME] {93}\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            ),
            "{r}"
        );
        assert!(
            r.contains(&format!("BODY[3.TEXT]<6> {{14}}\r\n{}", &text[6..20])),
            "{r}"
        );
        let r = c
            .cmd(
                "e",
                "FETCH 1 (BODY.PEEK[1.3.HEADER.FIELDS (SUBJECT)] BODY.PEEK[7])",
            )
            .await;
        assert!(
            r.contains("{43}\r\nSubject: Richiesta di accesso agli atti\r\n\r\n"),
            "{r}"
        );
        assert!(
            r.contains("BODY[7] {0}\r\n"),
            "a missing part is empty: {r}"
        );
        assert!(!r.contains("FLAGS"), "{r}");
        assert_eq!(seen(&store), vec![false, false]);

        let r = c.cmd("f", "FETCH 1 BODY[2]").await;
        assert!(
            r.starts_with(&format!(
                "* 1 FETCH (BODY[2] {{{}}}\r\n{SIGNATURE} FLAGS (\\Seen))\r\nf OK",
                SIGNATURE.len()
            )),
            "{r}"
        );
        assert_eq!(seen(&store), vec![true, false]);
        let r = c.cmd("g", "UID FETCH 2 (BODY[2]<0.5>)").await;
        assert!(r.contains("BODY[2]<0> {5}\r\n<?xml"), "{r}");
        assert!(r.contains("FLAGS (\\Seen)"), "{r}");
        assert_eq!(seen(&store), vec![true, true]);
    }

    #[tokio::test]
    async fn search_by_flags_uids_sequence_numbers_and_headers() {
        let (store, sim) = with_messages(4).await;
        store.set_seen(USER, 2, true);
        let mut c = logged_in(&sim).await;
        c.cmd("a", "SELECT INBOX").await;
        for (tag, command, answer) in [
            ("b", "SEARCH ALL", "* SEARCH 1 2 3 4\r\n"),
            ("c", "UID SEARCH UNSEEN", "* SEARCH 1 3 4\r\n"),
            ("d", "SEARCH SEEN", "* SEARCH 2\r\n"),
            ("e", "UID SEARCH UID 2:* UNSEEN", "* SEARCH 3 4\r\n"),
            ("f", "SEARCH 1:2 NOT SEEN", "* SEARCH 1\r\n"),
            ("g", "SEARCH SUBJECT \"messaggio 3\"", "* SEARCH 3\r\n"),
            (
                "h",
                "SEARCH OR UID 1 HEADER X-Long due",
                "* SEARCH 1 2 3 4\r\n",
            ),
        ] {
            let r = c.cmd(tag, command).await;
            assert!(r.starts_with(answer), "{command} -> {r}");
        }
        let r = c.cmd("i", "SEARCH SENTBEFORE 1-Jan-2020").await;
        assert!(r.starts_with("i NO"), "{r}");
        assert!(r.contains("SENTBEFORE"), "{r}");
    }

    #[tokio::test]
    async fn append_takes_a_literal_and_noop_announces_it() {
        let (store, sim) = with_messages(1).await;
        let mut c = logged_in(&sim).await;
        c.cmd("a", "SELECT INBOX").await;
        let raw = message(2);
        c.send(format!("b APPEND INBOX (\\Seen) {{{}}}\r\n", raw.len()).as_bytes())
            .await;
        let r = c.until(|b| b.ends_with(b"\r\n")).await;
        assert!(r.starts_with("+ "), "{r}");
        c.send(&raw).await;
        c.send(b"\r\n").await;
        let r = c.until(|b| b.ends_with(b"\r\n")).await;
        assert!(r.starts_with("b OK"), "{r}");
        assert_eq!(store.messages(USER)[1], raw);
        assert_eq!(seen(&store), vec![false, true]);
        let r = c.cmd("c", "NOOP").await;
        assert!(r.starts_with("* 2 EXISTS\r\n* 1 RECENT\r\nc OK"), "{r}");
        let r = c.cmd("d", "NOOP").await;
        assert!(r.starts_with("d OK"), "told once: {r}");

        c.send(b"e APPEND Archivio {3}\r\n").await;
        let r = c.until(|b| b.ends_with(b"\r\n")).await;
        assert!(r.starts_with("+ "), "{r}");
        c.send(b"abc\r\n").await;
        let r = c.until(|b| b.ends_with(b"\r\n")).await;
        assert!(r.starts_with("e NO [TRYCREATE]"), "{r}");
        c.send(b"f APPEND INBOX {999999999}\r\n").await;
        let r = c.until(|b| b.ends_with(b"\r\n")).await;
        assert!(r.starts_with("f NO [TOOBIG]"), "{r}");
        assert!(c.cmd("g", "NOOP").await.starts_with("g OK"));
    }

    #[tokio::test]
    async fn body_sets_seen_body_peek_does_not_and_store_changes_it() {
        let (store, sim) = with_messages(2).await;
        let mut c = logged_in(&sim).await;
        c.cmd("a", "SELECT INBOX").await;
        let r = c.cmd("b", "UID FETCH 1 (BODY.PEEK[])").await;
        assert!(r.contains("BODY[] {"), "{r}");
        assert!(!r.contains("FLAGS"), "{r}");
        assert_eq!(seen(&store), vec![false, false]);
        let r = c.cmd("c", "FETCH 1 (BODY[])").await;
        assert!(r.contains("FLAGS (\\Seen)"), "{r}");
        assert_eq!(seen(&store), vec![true, false]);
        let r = c.cmd("d", "UID STORE 2 +FLAGS (\\Seen \\Flagged)").await;
        assert!(r.starts_with("* 2 FETCH (UID 2 FLAGS (\\Seen))"), "{r}");
        assert_eq!(seen(&store), vec![true, true]);
        let r = c.cmd("e", "STORE 1:* -FLAGS.SILENT (\\Seen)").await;
        assert!(r.starts_with("e OK"), "{r}");
        assert_eq!(seen(&store), vec![false, false]);
        let r = c.cmd("f", "FETCH 2 RFC822").await;
        assert!(r.contains("FLAGS (\\Seen)"), "{r}");
        assert_eq!(seen(&store), vec![false, true]);
        let r = c.cmd("g", "EXPUNGE").await;
        assert!(r.starts_with("g NO"), "{r}");
        assert!(c.cmd("h", "CLOSE").await.starts_with("h OK"));
        assert!(c.cmd("i", "FETCH 1 (UID)").await.starts_with("i BAD"));
    }

    #[tokio::test]
    async fn a_nul_byte_in_a_stored_message_does_not_break_the_connection() {
        let (store, sim) = with_messages(0).await;
        store.deliver(USER, b"Subject: x\r\n\r\na\0b\r\n".to_vec());
        let mut c = logged_in(&sim).await;
        c.cmd("a", "EXAMINE INBOX").await;
        let r = c.cmd("b", "FETCH 1 (RFC822.SIZE BODY.PEEK[TEXT])").await;
        assert!(
            r.contains("RFC822.SIZE 19 BODY[TEXT] {5}\r\na b\r\n"),
            "{r}"
        );
        assert!(c.cmd("c", "NOOP").await.starts_with("c OK"));
    }

    #[tokio::test]
    async fn examine_is_read_only() {
        let (store, sim) = with_messages(1).await;
        let mut c = logged_in(&sim).await;
        let r = c.cmd("a", "EXAMINE INBOX").await;
        assert!(r.contains("a OK [READ-ONLY]"), "{r}");
        let r = c.cmd("b", "FETCH 1 (BODY[] RFC822)").await;
        assert!(!r.contains("FLAGS"), "{r}");
        let r = c.cmd("c", "STORE 1 +FLAGS (\\Seen)").await;
        assert!(r.starts_with("c NO"), "{r}");
        assert_eq!(seen(&store), vec![false]);
    }

    /// Random lines (a fixed xorshift sequence): each answered with BAD, the server never panics.
    /// Well-formed commands with random arguments (sequence sets from 1 to 2^32-1, every
    /// supported FETCH item and SEARCH key and some unsupported ones, STORE variants), while new
    /// mail arrives: every command gets its tagged answer, and the server keeps serving.
    #[tokio::test]
    async fn random_well_formed_commands_always_get_a_tagged_answer() {
        let (store, sim) = with_messages(3).await;
        let mut c = logged_in(&sim).await;
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        const ITEMS: [&str; 15] = [
            "UID",
            "FLAGS",
            "RFC822.SIZE",
            "INTERNALDATE",
            "BODY.PEEK[]",
            "BODY[]",
            "BODY[HEADER]",
            "BODY.PEEK[TEXT]",
            "RFC822",
            "BODY[]<0.10>",
            "BODY.PEEK[]<5.1000>",
            "BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
            "BODY[1]",
            "ENVELOPE",
            "RFC822.HEADER",
        ];
        const KEYS: [&str; 13] = [
            "ALL",
            "SEEN",
            "UNSEEN",
            "NOT SEEN",
            "OR SEEN UNSEEN",
            "LARGER 10",
            "SMALLER 100000",
            "SUBJECT \"messaggio\"",
            "SINCE 1-Jan-2020",
            "BEFORE 1-Jan-2030",
            "HEADER X-Long due",
            "TEXT corpo",
            "SENTON 1-Jan-2026",
        ];
        let (mut ok, mut bodies) = (0, 0);
        for i in 0..1500u32 {
            // Syntax errors are another test's (and close the connection after a few).
            let number = |next: &mut dyn FnMut(u64) -> u64| match next(6) {
                0 => "*".to_owned(),
                1 => "4294967295".to_owned(),
                2 => "2147483648".to_owned(),
                _ => (next(12) + 1).to_string(),
            };
            let mut set = String::new();
            for k in 0..=next(2) {
                if k > 0 {
                    set.push(',');
                }
                set.push_str(&number(&mut next));
                if next(2) == 0 {
                    set.push(':');
                    set.push_str(&number(&mut next));
                }
            }
            let uid = if next(2) == 0 { "UID " } else { "" };
            let command = match next(9) {
                0 | 1 => {
                    let items: Vec<&str> = (0..=next(3))
                        .map(|_| ITEMS[next(ITEMS.len() as u64) as usize])
                        .collect();
                    format!("{uid}FETCH {set} ({})", items.join(" "))
                }
                2 | 3 => {
                    let mut keys: Vec<String> = (0..=next(2))
                        .map(|_| KEYS[next(KEYS.len() as u64) as usize].to_owned())
                        .collect();
                    if next(3) == 0 {
                        keys.push(format!("UID {set}"));
                    }
                    format!("{uid}SEARCH {}", keys.join(" "))
                }
                4 => {
                    let op = ["+", "-", ""][next(3) as usize];
                    let silent = if next(2) == 0 { ".SILENT" } else { "" };
                    format!("{uid}STORE {set} {op}FLAGS{silent} (\\Seen \\Flagged)")
                }
                5 => ["SELECT INBOX", "EXAMINE INBOX", "SELECT Archivio"][next(3) as usize]
                    .to_owned(),
                6 => "STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)".to_owned(),
                7 => ["LIST \"\" \"*\"", "LSUB \"\" \"%\"", "CHECK", "NOOP"][next(4) as usize]
                    .to_owned(),
                _ => ["CLOSE", "UNSELECT", "EXPUNGE"][next(3) as usize].to_owned(),
            };
            if next(50) == 0 {
                store.deliver(USER, message(100 + i));
            }
            let tag = format!("t{i}");
            let r = c.cmd(&tag, &command).await;
            let last = r.trim_end().rsplit("\r\n").next().unwrap_or("");
            assert!(
                [" OK", " NO", " BAD"]
                    .iter()
                    .any(|k| last.starts_with(&format!("{tag}{k}"))),
                "{command} -> {r}"
            );
            ok += usize::from(last.starts_with(&format!("{tag} OK")));
            bodies += usize::from(r.contains("BODY[] {"));
        }
        // Half are answered OK (the rest: unsupported items, no mailbox selected, ...), and
        // messages come back whole.
        assert!(ok > 600 && bodies > 20, "{ok} OK, {bodies} with a body");
        assert!(c.cmd("z", "NOOP").await.contains("z OK"));
    }

    #[tokio::test]
    async fn garbage_is_answered_with_bad_and_too_much_closes_the_connection() {
        let (_, sim) = with_messages(1).await;
        let mut c = logged_in(&sim).await;
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..300 {
            let len = (next() % 80) as usize + 1;
            let mut line: Vec<u8> = (0..len)
                .map(|_| (next() % 256) as u8)
                .filter(|b| *b != b'\r' && *b != b'\n')
                .collect();
            if i % 3 == 0 {
                // Half-sensible: a tag and a command word with broken arguments.
                line.splice(0..0, b"x FETCH ".iter().copied());
            }
            line.extend_from_slice(b"\r\n");
            c.send(&line).await;
            let r = c.until(|b| b.ends_with(b"\r\n")).await;
            assert!(
                r.contains(" BAD "),
                "{:?} -> {r}",
                String::from_utf8_lossy(&line)
            );
            assert!(c.cmd("n", "NOOP").await.starts_with("n OK"));
        }
        for _ in 0..MAX_BAD_COMMANDS {
            c.send(b"\x01\x02 ??\r\n").await;
        }
        let r = c.until(|_| false).await;
        assert_eq!(r.matches("* BAD").count(), MAX_BAD_COMMANDS as usize, "{r}");
        assert!(r.contains("* BYE"), "{r}");
        // The server still serves others.
        let mut other = logged_in(&sim).await;
        assert!(other.cmd("a", "NOOP").await.starts_with("a OK"));
    }
}
