//! `pec-connector`: the connector's command line (see the library's documentation).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pec_connector::serve::config::ServeArgs;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pec-connector",
    version,
    about = "PEC mailbox as a Zendesk channel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain PEC messages (.eml files): kind, certified facts, original sender, signature.
    Inspect {
        /// The .eml files to read.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also trust this CA (PEM) for signatures, e.g. the sandbox provider's test CA.
        #[arg(long, value_name = "PEM")]
        trust: Vec<PathBuf>,
    },
    /// Run the connector on this machine: the HTTP API (admin routes, Zendesk's webhook) and
    /// every account's poll schedule, with state and secrets in a local data directory.
    Serve(ServeArgs),
    /// The whole loop offline: a simulated PEC provider and Zendesk, the connector between
    /// them; a citizen's PEC becomes a ticket, the agent's reply leaves as PEC, the receipts
    /// land on the ticket.
    Demo(pec_connector::demo::DemoArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Inspect { files, trust } => pec_connector::inspect::run(&files, &trust),
        Command::Serve(args) => pec_connector::serve::main(args),
        Command::Demo(args) => pec_connector::demo::main(args),
    }
}
