//! Builds provider-shaped PEC messages (being written).
