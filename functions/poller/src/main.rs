//! The poller Lambda's entry point: read the configuration, build the adapters once, serve.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    // JSON lines when the function's LogFormat is JSON (template.yaml); level from RUST_LOG.
    lambda_runtime::tracing::init_default_subscriber();
    let config = poller::Config::from_env()?;
    let (inbound, outbound) = poller::from_config(&config).await?;
    let (inbound, outbound) = (&inbound, &outbound);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        poller::handle(inbound, Some(outbound), event).await
    }))
    .await
}
