//! Test code shared by several test binaries.

pub mod imap_adapter;
