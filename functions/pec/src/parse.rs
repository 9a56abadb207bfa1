//! Parsing (being written).
pub struct Limits;
pub struct ParseError;
pub struct PecMessage;
