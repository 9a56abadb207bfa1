//! Checks of `template.yaml` against the code, in one test binary: every route the router serves
//! is deployed (`routes`) and every function's policy grants what it uses, no more (`policies`).

mod common;
mod policies;
mod routes;
