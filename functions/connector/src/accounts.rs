//! Account use cases that span the ports. (Registration, with its IMAP/SMTP checks and Zendesk
//! provisioning, comes with those adapters.)

use crate::domain::{AccountId, SecretName};
use crate::ports::{Schedules, Secrets, Store};
use crate::schedules::SchedulesError;
use crate::secrets::SecretsError;
use crate::store::StoreError;

/// Why removing an account stopped part-way. Running the removal again finishes it.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("cannot remove account {account}: its schedule")]
    Schedule {
        account: AccountId,
        #[source]
        source: SchedulesError,
    },
    #[error("cannot remove account {account}: its password")]
    Secret {
        account: AccountId,
        #[source]
        source: SecretsError,
    },
    #[error("cannot remove account {account}: its state")]
    State {
        account: AccountId,
        #[source]
        source: StoreError,
    },
}

impl AccountsError {
    pub fn is_transient(&self) -> bool {
        match self {
            AccountsError::Schedule { source, .. } => source.is_transient(),
            AccountsError::Secret { source, .. } => source.is_transient(),
            AccountsError::State { source, .. } => source.is_transient(),
        }
    }
}

/// Removes an account: its schedule first (so no poll starts), then its password, then its state
/// (settings, cursor, lease, records, outbox). Each step is idempotent, so a failed removal can
/// simply be run again. Returns whether the store had the account.
pub async fn remove_account(
    store: &dyn Store,
    secrets: &dyn Secrets,
    schedules: &dyn Schedules,
    account: &AccountId,
) -> Result<bool, AccountsError> {
    schedules
        .delete(account)
        .await
        .map_err(|source| AccountsError::Schedule {
            account: account.clone(),
            source,
        })?;
    secrets
        .delete(&SecretName::AccountPassword(account.clone()))
        .await
        .map_err(|source| AccountsError::Secret {
            account: account.clone(),
            source,
        })?;
    let existed = store
        .delete_account(account)
        .await
        .map_err(|source| AccountsError::State {
            account: account.clone(),
            source,
        })?;
    tracing::info!(account = %account, existed, "account removed");
    Ok(existed)
}
