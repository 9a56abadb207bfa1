//! The Zendesk instances of a deployment. The default instance is configured with the
//! deployment (its client is built at start); others are registered over the admin API
//! ([`ZendeskInstance`] in the store, its token in the secrets) and their clients are built on
//! first use and kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use zendesk::{Auth, RetryPolicy, ZendeskClient, ZendeskConfig, ZendeskError};

use crate::domain::{InstanceId, SecretName, ZendeskAuthKind, ZendeskInstance};
use crate::ports::{Secrets, Store};
use crate::secrets::SecretsError;
use crate::store::StoreError;

/// Why an instance's client could not be had.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("no Zendesk instance {0:?} is registered")]
    Unknown(String),
    #[error("zendesk instance: {0}")]
    Store(#[from] StoreError),
    #[error("zendesk instance token: {0}")]
    Secrets(#[from] SecretsError),
    #[error("zendesk instance client: {0}")]
    Zendesk(#[from] ZendeskError),
}

impl InstanceError {
    pub fn is_transient(&self) -> bool {
        match self {
            InstanceError::Unknown(_) => false,
            InstanceError::Store(e) => e.is_transient(),
            InstanceError::Secrets(e) => e.is_transient(),
            InstanceError::Zendesk(e) => e.is_transient(),
        }
    }
}

/// The registered instances' clients, built on first use.
pub struct ZendeskDirectory {
    store: Arc<dyn Store>,
    secrets: Arc<dyn Secrets>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    clients: Mutex<HashMap<InstanceId, Arc<ZendeskClient>>>,
}

impl ZendeskDirectory {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<dyn Secrets>) -> Self {
        Self {
            store,
            secrets,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of instance `id`.
    pub async fn client(&self, id: &InstanceId) -> Result<Arc<ZendeskClient>, InstanceError> {
        if let Some(c) = self.clients.lock().expect("not poisoned").get(id) {
            return Ok(c.clone());
        }
        let instance = self
            .store
            .get_instance(id)
            .await?
            .ok_or_else(|| InstanceError::Unknown(id.as_str().to_owned()))?;
        let token = self
            .secrets
            .get(&SecretName::ZendeskToken(id.clone()))
            .await?;
        let client = Arc::new(self.build(&instance, token)?);
        self.clients
            .lock()
            .expect("not poisoned")
            .insert(id.clone(), client.clone());
        Ok(client)
    }

    /// A client for `instance` with `token` (also used to check a registration).
    pub fn build(
        &self,
        instance: &ZendeskInstance,
        token: SecretString,
    ) -> Result<ZendeskClient, ZendeskError> {
        let auth = match &instance.auth {
            ZendeskAuthKind::ApiToken { email } => Auth::Basic {
                email: email.clone(),
                api_token: token,
            },
            ZendeskAuthKind::OAuth => Auth::Bearer { token },
        };
        ZendeskClient::new(ZendeskConfig {
            base_url: instance.url.clone(),
            auth,
            timeout: self.timeout,
            retry: self.retry,
        })
    }

    /// Drops a kept client (the instance was registered again or removed).
    pub fn forget(&self, id: &InstanceId) {
        self.clients.lock().expect("not poisoned").remove(id);
    }
}
