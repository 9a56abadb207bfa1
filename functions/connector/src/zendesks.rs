//! The Zendesk instances of a deployment. The default instance is configured with the
//! deployment (its client is built at start); others are registered over the admin API
//! ([`ZendeskInstance`] in the store, its token in the secrets) and their clients are built on
//! first use and kept for [`CLIENT_TTL`]: an instance registered again with a new token is
//! used with it at once by the process that registered it ([`ZendeskDirectory::forget`]) and
//! within the TTL by every other (the poller's warm Lambdas while the api registers).
//!
//! Zendesk's request limit is per Zendesk account, whatever the client: every client built here
//! for one instance URL shares one [`RateBudget`], kept for the life of the process (across
//! rebuilds and new tokens), so all the account runs of a process see the same requests left.
//! The default instance's client is built once per process and keeps its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use zendesk::{Auth, RateBudget, RetryPolicy, ZendeskClient, ZendeskConfig, ZendeskError};

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

/// The client of `instance` in `directory`, or `default` (the deployment's own Zendesk) when no
/// instance is named: how every use case finds the Zendesk an account or a call belongs to.
pub async fn client_for(
    default: &Arc<ZendeskClient>,
    directory: Option<&Arc<ZendeskDirectory>>,
    instance: Option<&InstanceId>,
) -> Result<Arc<ZendeskClient>, InstanceError> {
    match (instance, directory) {
        (None, _) => Ok(default.clone()),
        (Some(id), Some(directory)) => directory.client(id).await,
        (Some(id), None) => Err(InstanceError::Unknown(id.as_str().to_owned())),
    }
}

/// A use case that works in one Zendesk instance at a time: the default one's client, the
/// directory of the others, and how to make a copy of itself working in another.
pub trait OnInstance: Sized {
    /// The default instance's client and the directory of the others (if any).
    fn zendesks(&self) -> (&Arc<ZendeskClient>, Option<&Arc<ZendeskDirectory>>);
    /// This use case working in instance `id` through `client`.
    fn with_client(&self, id: &InstanceId, client: Arc<ZendeskClient>) -> Self;
}

/// `use_case` working in `instance`: the one home of the "copy myself for another Zendesk
/// instance" step of the inbound, outbound and admin use cases.
pub async fn on_instance<T: OnInstance>(
    use_case: &T,
    instance: &InstanceId,
) -> Result<T, InstanceError> {
    let (default, directory) = use_case.zendesks();
    let client = client_for(default, directory, Some(instance)).await?;
    Ok(use_case.with_client(instance, client))
}

/// How long a kept client is used before its instance and token are read again.
pub const CLIENT_TTL: Duration = Duration::from_secs(60);

/// The registered instances' clients, built on first use and kept for [`ZendeskDirectory::ttl`].
pub struct ZendeskDirectory {
    store: Arc<dyn Store>,
    secrets: Arc<dyn Secrets>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How long a kept client is used ([`CLIENT_TTL`]).
    pub ttl: Duration,
    /// How long a rate-limit report is trusted (Zendesk's minute; shorter against a simulator
    /// with a shorter window).
    pub rate_window: Duration,
    kept: Mutex<Kept>,
    /// One request budget per instance URL (lower case), never dropped.
    budgets: Mutex<HashMap<String, RateBudget>>,
}

/// The kept clients, each with when it was built.
#[derive(Default)]
struct Kept {
    clients: HashMap<InstanceId, (Arc<ZendeskClient>, Instant)>,
    /// Moves on at every [`ZendeskDirectory::forget`]: a client built from what was read
    /// before is not kept (it may carry the replaced token).
    generation: u64,
}

impl ZendeskDirectory {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<dyn Secrets>) -> Self {
        Self {
            store,
            secrets,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            ttl: CLIENT_TTL,
            rate_window: zendesk::ZENDESK_WINDOW,
            kept: Mutex::new(Kept::default()),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// The request budget of the Zendesk at `url`, shared by every client built for it.
    pub fn budget(&self, url: &str) -> RateBudget {
        let key = url.trim().trim_end_matches('/').to_ascii_lowercase();
        self.budgets
            .lock()
            .expect("not poisoned")
            .entry(key)
            .or_insert_with(|| RateBudget::with_window(self.rate_window))
            .clone()
    }

    /// The client of instance `id`.
    pub async fn client(&self, id: &InstanceId) -> Result<Arc<ZendeskClient>, InstanceError> {
        let generation = {
            let kept = self.kept.lock().expect("not poisoned");
            if let Some((client, built)) = kept.clients.get(id)
                && built.elapsed() < self.ttl
            {
                return Ok(client.clone());
            }
            kept.generation
        };
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
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.generation == generation {
            kept.clients
                .insert(id.clone(), (client.clone(), Instant::now()));
        }
        Ok(client)
    }

    /// A client for `instance` with `token` (also used to check a registration), feeding the
    /// instance's request budget.
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
        let client = ZendeskClient::new(ZendeskConfig {
            base_url: instance.url.clone(),
            auth,
            timeout: self.timeout,
            retry: self.retry,
        })?;
        Ok(client.with_budget(self.budget(&instance.url)))
    }

    /// Drops a kept client (the instance was registered again or removed); a client being
    /// built meanwhile is not kept.
    pub fn forget(&self, id: &InstanceId) {
        let mut kept = self.kept.lock().expect("not poisoned");
        kept.clients.remove(id);
        kept.generation += 1;
    }
}

#[cfg(all(test, feature = "embedded"))]
mod tests {
    use std::time::Instant;

    use async_trait::async_trait;
    use sandbox::ZendeskSimulator;
    use sandbox::zendesk::Credentials;
    use tokio::sync::{Mutex as AsyncMutex, oneshot};

    use super::*;
    use crate::secrets::file::FileSecrets;
    use crate::store::sqlite::SqliteStore;

    /// Secrets whose next read, once armed, answers only when told to: a client being built
    /// while a registration replaces the token.
    struct HeldSecrets {
        inner: FileSecrets,
        /// Told when the read has its value; waits for the go-ahead.
        armed: AsyncMutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
    }

    #[async_trait]
    impl Secrets for HeldSecrets {
        async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
            self.inner.put(name, value).await
        }
        async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
            let value = self.inner.get(name).await;
            if let Some((read, go)) = self.armed.lock().await.take() {
                let _ = read.send(());
                let _ = go.await;
            }
            value
        }
        async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
            self.inner.delete(name).await
        }
        async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
            self.inner.list().await
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_built_while_the_token_is_replaced_is_not_kept() {
        let sim = ZendeskSimulator::start_with(Credentials {
            api_token: "token-nuovo".into(),
            ..Credentials::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secrets = Arc::new(HeldSecrets {
            inner: FileSecrets::open(dir.path()).unwrap(),
            armed: AsyncMutex::new(None),
        });
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let id = InstanceId::parse("cliente-t").unwrap();
        store
            .put_instance(&ZendeskInstance {
                id: id.clone(),
                url: sim.base_url().to_owned(),
                auth: ZendeskAuthKind::ApiToken {
                    email: sim.credentials().agent_email.clone(),
                },
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let token = SecretName::ZendeskToken(id.clone());
        secrets
            .put(&token, &SecretString::from("token-vecchio"))
            .await
            .unwrap();
        let directory = Arc::new(ZendeskDirectory::new(store, secrets.clone()));

        // A client is being built from the old token when a registration replaces it.
        let (read_tx, read_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        *secrets.armed.lock().await = Some((read_tx, go_rx));
        let building = tokio::spawn({
            let (directory, id) = (directory.clone(), id.clone());
            async move { directory.client(&id).await.unwrap() }
        });
        read_rx.await.unwrap();
        secrets
            .put(&token, &SecretString::from("token-nuovo"))
            .await
            .unwrap();
        directory.forget(&id);
        go_tx.send(()).unwrap();
        let old = building.await.unwrap();
        assert!(
            matches!(
                old.current_user(soon()).await,
                Err(ZendeskError::Unauthorized { .. })
            ),
            "the client read before the change has the old token"
        );

        // The next caller gets the new token, not the client finished after the change.
        let new = directory.client(&id).await.unwrap();
        new.current_user(soon()).await.expect("the new token");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kept_clients_are_read_again_after_the_ttl() {
        let sim = ZendeskSimulator::start_with(Credentials {
            api_token: "token-nuovo".into(),
            ..Credentials::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secrets: Arc<dyn Secrets> = Arc::new(FileSecrets::open(dir.path()).unwrap());
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let id = InstanceId::parse("cliente-t").unwrap();
        store
            .put_instance(&ZendeskInstance {
                id: id.clone(),
                url: sim.base_url().to_owned(),
                auth: ZendeskAuthKind::ApiToken {
                    email: sim.credentials().agent_email.clone(),
                },
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let token = SecretName::ZendeskToken(id.clone());
        secrets
            .put(&token, &SecretString::from("token-vecchio"))
            .await
            .unwrap();
        // Another process (the poller) keeps its client for a short TTL.
        let mut other = ZendeskDirectory::new(store.clone(), secrets.clone());
        other.ttl = Duration::from_millis(300);
        let kept = other.client(&id).await.unwrap();
        assert!(kept.current_user(soon()).await.is_err());

        // This process registers the new token.
        secrets
            .put(&token, &SecretString::from("token-nuovo"))
            .await
            .unwrap();
        assert!(
            Arc::ptr_eq(&kept, &other.client(&id).await.unwrap()),
            "kept within the TTL"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        let fresh = other.client(&id).await.unwrap();
        assert!(
            fresh.budget().same_as(kept.budget()),
            "a rebuilt client keeps the instance's request budget"
        );
        assert!(
            other
                .budget(&format!("{}/", sim.base_url().to_uppercase()))
                .same_as(kept.budget())
        );
        fresh
            .current_user(soon())
            .await
            .expect("after the TTL, the new token");
        assert_eq!(CLIENT_TTL, Duration::from_secs(60), "the TTL in production");
    }
}
