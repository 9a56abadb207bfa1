//! The api Lambda's entry point: read the configuration, build the adapters once, serve the
//! router behind API Gateway.

#[cfg(feature = "lambda")]
#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    // JSON lines when the function's LogFormat is JSON (template.yaml); level from RUST_LOG.
    lambda_http::tracing::init_default_subscriber();
    let state = api::AppState::from_env().await?;
    lambda_http::run(api::router(std::sync::Arc::new(state))).await
}

#[cfg(not(feature = "lambda"))]
fn main() {
    eprintln!("the api binary needs the `lambda` feature");
    std::process::exit(2);
}
