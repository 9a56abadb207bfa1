//! The api Lambda's entry point: read the configuration, build the adapters once, serve the
//! router behind API Gateway.

#[cfg(feature = "lambda")]
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    use std::sync::Arc;

    use connector::outbound::WebhookLimits;
    use connector::wiring::{AwsParts, Config};

    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
    let config = Config::from_env()?;
    let parts = AwsParts::from_config(&config).await?;
    let admin = parts
        .admin(&config)
        .await?
        .map(|(admin, token)| (Arc::new(admin), token));
    let state = api::AppState {
        outbound: Arc::new(parts.outbound()),
        webhook_secrets: api::WebhookKeys::stored(parts.secrets.clone()),
        webhook_limits: WebhookLimits::default(),
        admin,
        console: api::console::ConsoleSettings::from_env()?,
    };
    lambda_http::run(api::router(Arc::new(state))).await
}

#[cfg(not(feature = "lambda"))]
fn main() {
    eprintln!("the api binary needs the `lambda` feature");
    std::process::exit(2);
}
