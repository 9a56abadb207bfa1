//! The mail adapter tests, in one test binary: the IMAP and SMTP contract suites
//! (`imap_adapter`, `smtp_adapter`) run against the real servers (Dovecot, the SMTPS test server)
//! and against the sandbox's simulators.

mod imap_adapter;
mod imap_dovecot;
mod imap_simulator;
mod smtp_adapter;
mod smtp_server;
mod smtp_simulator;
