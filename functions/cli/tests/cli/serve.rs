//! `serve` without outside services: the routes on a real socket, the tokens in the data
//! directory. (With Dovecot, SMTP and the Zendesk simulator: `tests/tests/e2e/serve.rs`.)

use std::path::Path;
use std::time::Duration;

use pec_connector::serve::{ServeConfig, Server};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;

fn config(dir: &Path) -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".to_owned(),
        data_dir: dir.to_owned(),
        // Nothing listens there: start-up never calls Zendesk.
        zendesk_url: "http://127.0.0.1:9".to_owned(),
        zendesk_email: "agent@example.test".to_owned(),
        zendesk_api_token: Some(SecretString::from("zendesk-token-for-tests")),
        admin_token: None,
        public_url: None,
        trust_ca: None,
        agent_reserve_percent: 20,
        trust_pec_ca: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_guards_the_admin_routes_with_a_generated_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let base = format!("http://{}", server.local_addr());
    let token_file = server.admin_token_file().to_owned();
    assert!(token_file.starts_with(dir.path()));
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );

    let token = std::fs::read_to_string(&token_file).unwrap();
    assert_eq!(token.len(), 64, "32 random bytes in hex");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let anonymous = http.get(format!("{base}/accounts")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let listed = http
        .get(format!("{base}/accounts"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();

    // The tokens are kept: a restart without them in the environment uses the same ones.
    let again = Server::start(ServeConfig {
        zendesk_api_token: None,
        ..config(dir.path())
    })
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(again.admin_token_file()).unwrap(),
        token
    );
}

#[tokio::test]
async fn refuses_to_start_without_a_zendesk_token() {
    let dir = tempfile::tempdir().unwrap();
    let err = Server::start(ServeConfig {
        zendesk_api_token: None,
        ..config(dir.path())
    })
    .await
    .err()
    .expect("no token, no start")
    .to_string();
    assert!(err.contains("ZENDESK_API_TOKEN"), "{err}");
}
