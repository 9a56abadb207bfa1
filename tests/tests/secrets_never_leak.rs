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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_shared_passwords_keep_secrets_out_of_state_and_logs() {
    let env = e2e::env::aws_shared().await;
    let secrets = exercise_and_scan(&env, "aws-shared").await;
    // Control: the rotated password is where it belongs, in a password shard.
    let prefix = env.raw.prefix().unwrap();
    let sm = aws_sdk_secretsmanager::Client::new(&e2e::env::moto_config().await);
    let shard = sm
        .get_secret_value()
        .secret_id(format!("{prefix}/{}", connector::secrets::shard_key(0)))
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap_or_default();
    assert!(
        shard.contains(&secrets[1]),
        "control: rotated password in its shard"
    );
    // What the test environment shows of the secrets names the accounts, never a password.
    let names = env.raw.secrets().await.join("\n");
    for s in &secrets {
        assert!(
            !names.contains(s.as_str()),
            "a secret is in a secret's name"
        );
    }
}

/// The admin API and the webhook, end to end: register an account (its password, the webhook's
/// bearer token and signing secret, the admin token, the Zendesk API token all in play), send a
/// PEC through the webhook, change and delete the account; no answer, stored item or log line
/// holds any of those secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_webhook_keep_secrets_out_of_answers_state_and_logs() {
    use e2e::admin_env::{ADMIN_TOKEN, AdminEnv};
    use e2e::inbound_env::PASSWORD;
    let logs = captured();
    let env = AdminEnv::new().await;
    let address = env.new_address("leak");
    let mut answers = Vec::new();
    let r = env
        .admin("POST", "/accounts", Some(&env.registration(&address)))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    answers.push(r.body.to_string());
    // A refused login logs and answers without the password either.
    let mut wrong = env.registration(&env.new_address("leak-wrong"));
    wrong["password"] = serde_json::json!("Errata-Password-5521");
    let w = env.admin("POST", "/accounts", Some(&wrong)).await;
    assert_eq!(w.status, 422);
    answers.push(w.body.to_string());

    let webhook = env.sim.webhooks().remove(0);
    let signing = env.sim.webhook_signing_secret(&webhook.id).unwrap();
    let bearer = webhook.authentication.as_ref().unwrap()["data"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = serde_json::json!({"account": id, "ticket_id": "999999", "requester": "a@pec.test",
                                  "subject": "Prova", "message": "Testo"})
    .to_string();
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let headers = vec![
        ("Authorization".to_owned(), format!("Bearer {bearer}")),
        (
            "X-Zendesk-Webhook-Signature".to_owned(),
            e2e::outbound_env::sign(&signing, &ts, body.as_bytes()),
        ),
        ("X-Zendesk-Webhook-Signature-Timestamp".to_owned(), ts),
    ];
    let sent = e2e::outbound_env::call(
        &env.router,
        "POST",
        api::WEBHOOK_PATH,
        headers,
        body.into_bytes(),
    )
    .await;
    assert!(sent.status < 500, "{sent:?}");
    answers.push(sent.body.to_string());
    let p = env
        .admin(
            "PATCH",
            &format!("/accounts/{id}"),
            Some(&serde_json::json!({"password": PASSWORD, "poll_interval_minutes": 3})),
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    answers.push(p.body.to_string());
    let mut stored = env.env.raw.state().await;
    stored.extend(env.env.raw.schedules().await);
    assert_eq!(
        env.admin("DELETE", &format!("/accounts/{id}"), None)
            .await
            .status,
        204
    );

    let log = logs.lock().unwrap().clone();
    assert!(
        contains(&log, "account registered"),
        "control: the logs were captured"
    );
    for secret in [
        ADMIN_TOKEN,
        env.sim.credentials().api_token.as_str(),
        signing.as_str(),
        bearer.as_str(),
        "Errata-Password-5521",
    ] {
        assert!(!contains(&log, secret), "a secret is in the logs");
        for text in answers.iter().chain(&stored) {
            assert!(!text.contains(secret), "a secret leaked into {text}");
        }
    }
    // The test servers' password is the word "secret": look for it as a value.
    for form in [
        format!("\"{PASSWORD}\""),
        format!("S(\"{PASSWORD}\")"),
        format!("={PASSWORD}"),
    ] {
        assert!(
            !contains(&log, &form),
            "the account password is in the logs"
        );
        for text in answers.iter().chain(&stored) {
            assert!(
                !text.contains(&form),
                "the account password leaked into {text}"
            );
        }
    }
}
