//! Writes the synthetic PEC fixtures, `tests/fixtures/<name>.eml` and the report a correct
//! parser gives for each, `tests/fixtures/<name>.json`, from the specs in
//! `tests/support/fixtures.rs`.
//!
//! `cargo run -p pec --example make_fixtures`

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::create_dir_all(&dir)?;
    let all = fixtures::all();
    for fixture in &all {
        let eml = dir.join(fixture.file_name());
        std::fs::write(&eml, fixture.build())?;
        let mut json = serde_json::to_string_pretty(&fixture.expected())?;
        json.push('\n');
        std::fs::write(dir.join(format!("{}.json", fixture.name)), json)?;
        println!("wrote {}", eml.display());
    }
    println!("{} fixtures", all.len());
    Ok(())
}
