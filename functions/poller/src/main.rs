//! The poller Lambda's entry point: read the configuration, build the adapters once, serve.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(false)
        .without_time()
        .init();
    let config = poller::Config::from_env()?;
    let (inbound, outbound) = poller::from_config(&config).await?;
    let (inbound, outbound) = (&inbound, &outbound);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        poller::handle(inbound, Some(outbound), event).await
    }))
    .await
}
