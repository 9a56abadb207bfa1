//! The original message (being written).
pub struct Attachment;
pub struct Mailbox;
pub struct OriginalMessage;
