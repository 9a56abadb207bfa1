//! The flat summary printed by `pec-connector inspect` (being written).
