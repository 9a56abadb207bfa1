//! Secrets in AWS Secrets Manager: one secret per account password (`<prefix>/account/<id>`) and
//! one each for the Zendesk API token, the webhook signing secret and the admin token.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use secrecy::{ExposeSecret, SecretString};

use super::SecretsError;
use crate::aws::{AwsFailure, classify};
use crate::domain::SecretName;
use crate::ports::Secrets;

/// The Secrets Manager [`Secrets`].
#[derive(Clone, Debug)]
pub struct AwsSecrets {
    client: Client,
    prefix: String,
}

impl AwsSecrets {
    /// Secrets are named `<prefix>/<name>`, e.g. `pec-connector/account/aruba-1`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    /// The Secrets Manager name of a secret.
    pub fn secret_id(&self, name: &SecretName) -> String {
        format!("{}/{}", self.prefix, name.key())
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names of the secrets under the prefix, without it (`account/aruba-1`, ...).
    pub(crate) async fn list_keys(&self) -> Result<Vec<String>, SecretsError> {
        let op = format!("list secrets under {}/", self.prefix);
        let prefix = format!("{}/", self.prefix);
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(&prefix)
            .build();
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_secrets()
                .filters(filter.clone())
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk(&op, e))?;
            for entry in out.secret_list.unwrap_or_default() {
                if let Some(key) = entry.name.as_deref().and_then(|n| n.strip_prefix(&prefix)) {
                    keys.push(key.to_owned());
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(keys)
    }
}

pub(crate) fn sdk<E, R>(op: &str, e: SdkError<E, R>) -> SecretsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let op = op.to_owned();
    match classify(&e) {
        // Secrets Manager's LimitExceededException: too many calls at once.
        AwsFailure::Throttled | AwsFailure::LimitExceeded => SecretsError::Throttled {
            op,
            source: Box::new(e),
        },
        AwsFailure::Unavailable => SecretsError::Unavailable {
            op,
            source: Box::new(e),
        },
        _ => SecretsError::Rejected {
            op,
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl Secrets for AwsSecrets {
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        let id = self.secret_id(name);
        let op = format!("store secret {id}");
        let created = self
            .client
            .create_secret()
            .name(&id)
            .description("PEC connector credential")
            .secret_string(value.expose_secret())
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceExistsException") => {
                self.client
                    .put_secret_value()
                    .secret_id(&id)
                    .secret_string(value.expose_secret())
                    .send()
                    .await
                    .map_err(|e| sdk(&op, e))?;
            }
            Err(e) => return Err(sdk(&op, e)),
        }
        tracing::debug!(secret = %id, "secret stored");
        Ok(())
    }

    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        let id = self.secret_id(name);
        let op = format!("read secret {id}");
        match self.client.get_secret_value().secret_id(&id).send().await {
            Ok(out) => out
                .secret_string
                .map(SecretString::from)
                .ok_or(SecretsError::Invalid {
                    op,
                    reason: "it holds binary data, not text".into(),
                }),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(SecretsError::NotFound { name: id })
            }
            Err(e) => Err(sdk(&op, e)),
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
        let id = self.secret_id(name);
        let op = format!("delete secret {id}");
        // Without a recovery window: a deleted account's password must not linger, and the same
        // account id can be registered again at once.
        match self
            .client
            .delete_secret()
            .secret_id(&id)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => {
                tracing::debug!(secret = %id, "secret deleted");
                Ok(())
            }
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(sdk(&op, e)),
        }
    }

    async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
        let op = format!("list secrets under {}/", self.prefix);
        let mut names = Vec::new();
        for key in self.list_keys().await? {
            let name = SecretName::parse_key(&key).map_err(|e| SecretsError::Invalid {
                op: op.clone(),
                reason: e.to_string(),
            })?;
            names.push(name);
        }
        names.sort();
        Ok(names)
    }
}
