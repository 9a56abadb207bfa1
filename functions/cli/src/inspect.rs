//! `pec-connector inspect`: what each `.eml` is, as the connector sees it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use pec::report::Report;
use pec::{Limits, PecMessage, TrustAnchors};

/// Prints one JSON report per file (an array when several). Exit status 0 when every file was
/// read, 1 otherwise, 2 when a trust anchor cannot be used.
pub fn run(files: &[PathBuf], trust: &[PathBuf]) -> ExitCode {
    let mut anchors = TrustAnchors::pec();
    for path in trust {
        let added = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| anchors.add_pem(&pem).map_err(|e| e.to_string()));
        if let Err(e) = added {
            eprintln!(
                "pec-connector: cannot use trust anchor {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    let limits = Limits::default();
    let mut reports = Vec::new();
    let mut failed = false;
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) => {
                eprintln!("pec-connector: cannot read {}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        match PecMessage::parse_with(&raw, &limits, &anchors) {
            Ok(msg) => reports.push(Report::from_message(&msg, &name)),
            Err(e) => {
                eprintln!("pec-connector: {}: {e}", path.display());
                failed = true;
            }
        }
    }
    let json = if files.len() == 1 {
        reports.first().map(serde_json::to_string_pretty)
    } else {
        Some(serde_json::to_string_pretty(&reports))
    };
    if let Some(json) = json {
        let json = json.expect("a report always serialises");
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{json}").is_err() {
            return ExitCode::from(1);
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
