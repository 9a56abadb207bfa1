//! Provider subject prefixes.
