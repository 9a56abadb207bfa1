//! The command-line tests, in one test binary (one link instead of one per file): the demo,
//! `inspect` on the public samples and the sandbox's messages, the providers' quirks and `serve`.

mod demo;
mod inspect;
mod inspect_sandbox;
mod provider_quirks;
mod serve;
