//! No secret value is ever written to the store or to the logs: store known secrets, use them
//! through every port, then scan every stored item / database byte and every log line (captured
//! at TRACE, the AWS SDK's own included) for them.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use connector::domain::SecretName;
use e2e::Env;
use e2e::contract::populate;
use secrecy::{ExposeSecret, SecretString};

/// Everything any thread of this test binary logs.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(Arc::clone(&sink)))
            .init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn exercise_and_scan(env: &Env, label: &str) -> Vec<String> {
    let logs = captured();
    let password = format!("Pw-{label}-{}-s3cr3t", e2e::env::unique_name());
    let token = format!("Zd-{label}-{}-t0k3n", e2e::env::unique_name());
    let admin = format!("Adm-{label}-{}-t0k3n", e2e::env::unique_name());

    let account = populate(env, &format!("leak-{label}"), &password).await;
    env.secrets
        .put(
            &SecretName::ZendeskApiToken,
            &SecretString::from(token.clone()),
        )
        .await
        .unwrap();
    env.secrets
        .put(&SecretName::AdminToken, &SecretString::from(admin.clone()))
        .await
        .unwrap();
    // Read back as a poll would, and log around it the way the code does.
    let read = env
        .secrets
        .get(&account.password_secret_name())
        .await
        .unwrap();
    assert_eq!(read.expose_secret(), password);
    tracing::info!(account = %account.id, password = ?read, "credentials loaded");
    let err = env
        .secrets
        .get(&SecretName::WebhookSigningSecret)
        .await
        .unwrap_err();
    tracing::warn!(error = %err, "expected failure");
    // Rotation, and an account update, then a removal of another account.
    let rotated = format!("{password}-rotated");
    env.secrets
        .put(
            &account.password_secret_name(),
            &SecretString::from(rotated.clone()),
        )
        .await
        .unwrap();
    env.store.update_account(&account).await.unwrap();

    let secrets = [password, rotated, token, admin];
    let state = env.raw.state().await;
    assert!(!state.is_empty(), "the scan must see the stored state");
    let state_text = state.join("\n");
    let state_bytes = env.raw.state_bytes();
    let log_bytes = logs.lock().unwrap().clone();
    assert!(
        contains(&log_bytes, "credentials loaded"),
        "the scan must see the logs"
    );
    assert!(
        contains(&log_bytes, "TRACE"),
        "the logs are captured at TRACE"
    );
    for s in &secrets {
        assert!(
            !state_text.contains(s.as_str()),
            "a secret is in the store: {s}"
        );
        assert!(
            !contains(&state_bytes, s),
            "a secret is in the database file"
        );
        assert!(!contains(&log_bytes, s), "a secret is in the logs");
    }
    eprintln!(
        "{label}: scanned {} stored items/rows, {} database bytes, {} log bytes",
        state.len(),
        state_bytes.len(),
        log_bytes.len()
    );
    secrets.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_keeps_secrets_out_of_state_and_logs() {
    let env = e2e::env::embedded().await;
    let dir = env._dir.as_ref().unwrap().path().to_owned();
    let secrets = exercise_and_scan(&env, "embedded").await;
    // Control: the same scan does find them where they belong (the secrets directory).
    let mut kept = Vec::new();
    for entry in std::fs::read_dir(dir.join("secrets")).unwrap() {
        kept.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        contains(&kept, &secrets[1]),
        "control: rotated password on disk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_keeps_secrets_out_of_state_and_logs() {
    let env = e2e::env::aws().await;
    let secrets = exercise_and_scan(&env, "aws").await;
    assert!(secrets.iter().all(|s| !s.is_empty()));
}
