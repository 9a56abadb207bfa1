//! Account passwords kept many to a secret in Secrets Manager.
//!
//! A secret costs $0.40 a month whatever it holds: one per account is most of what an account
//! costs. Here the passwords live in **shards**, `<prefix>/accounts/0`, `<prefix>/accounts/1`, ...:
//! each a JSON object `{"<account id>": "<password>", ...}` under Secrets Manager's 64 KB limit
//! on a value. An account is in the first shard that holds it; a new account goes into the first
//! shard with room (under [`SharedSecrets::fill_limit`], 48 KB: the rest is headroom for
//! passwords of accounts already there to grow), and a shard is created when none has room. So
//! there are as few shards as the passwords need (a few hundred accounts each), and a deployment
//! pays for at most one secret per account. Every other secret (Zendesk tokens, webhook secrets,
//! the admin token) is one secret, as [`AwsSecrets`] keeps it.
//!
//! **Changing one account's password is one call of the port**, made by the admin API: read the
//! shard, change the one entry, write it back. Secrets Manager has no conditional write, so the
//! write is made one by its version stages: the new value is put as a version labelled
//! `AWSPENDING` (which leaves `AWSCURRENT` where it is), then `AWSCURRENT` is moved to it from
//! the version that was read (`UpdateSecretVersionStage` with `RemoveFromVersionId`, which fails
//! when `AWSCURRENT` is no longer there). When another write came first, the move fails and the
//! change is made again on what that write left: two rotations of two accounts of one shard,
//! in two processes at once, both stay. A shard is created with `CreateSecret`, which fails when
//! another process created it first; the same retry follows.
//!
//! **Reading** walks the shards in order to the account's entry (one `GetSecretValue` per shard,
//! for every account of it), then, for deployments older than the shards, the account's own
//! secret `<prefix>/account/<id>`. What is read is kept in the process as
//! [`super::cache`] explains: a copy is read again after [`Freshness::ttl`], when the account's
//! `password_set_at` is newer than the copy ([`Secrets::get_current`]), or after a refused
//! login ([`Secrets::forget`]). A poller container reads each shard about once an hour.
//!
//! **Migration**: an account that still has its own secret keeps working (it is read there when
//! no shard has it); its next password change moves it into a shard and deletes its own secret.
//!
//! Shards are never deleted (an empty one waits for the next account); one holds the passwords of
//! many accounts, so every function that reads a password can read them all (as with one secret
//! per account under `account/*`, the poller's policy already could).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::aws::{AwsSecrets, sdk};
use super::cache::{Freshness, ReadAt};
use super::{SecretsError, is_shard_key, shard_key};
use crate::domain::{AccountId, SecretName};
use crate::ports::Secrets;

/// Secrets Manager's limit on a secret's value (bytes).
pub const MAX_VALUE_BYTES: usize = 65_536;
/// How full a shard may get with new accounts (bytes).
pub const DEFAULT_FILL_LIMIT: usize = 48 * 1024;
/// The stage a new shard version waits under until it becomes `AWSCURRENT`.
const PENDING: &str = "AWSPENDING";
const CURRENT: &str = "AWSCURRENT";
/// Attempts of one change before giving up (each lost only to another change of the shard).
const MAX_ATTEMPTS: u32 = 40;
/// More shards than this is a fault (a runaway walk), not a deployment.
const MAX_SHARDS: u32 = 10_000;

/// The shared [`Secrets`]: account passwords in shards, every other secret on its own.
pub struct SharedSecrets {
    client: Client,
    single: AwsSecrets,
    fresh: Freshness,
    /// New accounts go into a shard only while it stays at or under this many bytes.
    pub fill_limit: usize,
    kept: Mutex<Kept>,
}

/// What this process read.
#[derive(Default)]
struct Kept {
    /// Shard `n` as read: `None` when there was no such shard (the end of the walk).
    shards: HashMap<u32, (Option<Arc<Shard>>, ReadAt)>,
    /// Accounts' own secrets (the layout before shards): `None` when there was none.
    own: HashMap<AccountId, (Option<SecretString>, ReadAt)>,
}

/// One shard's entries and the version they were read at.
struct Shard {
    version: String,
    entries: BTreeMap<String, SecretString>,
}

/// How one write of a shard ended.
enum Written {
    Done(Shard),
    /// Another write came first: read again and redo the change.
    Lost,
    /// The shard takes no more versions for now (Secrets Manager's quota on versions made
    /// within a day): put a new account elsewhere.
    Full,
}

impl SharedSecrets {
    /// Shards are `<prefix>/accounts/<n>`; other secrets `<prefix>/<name>` as [`AwsSecrets`].
    pub fn new(client: Client, prefix: impl Into<String>, fresh: Freshness) -> Self {
        let single = AwsSecrets::new(client.clone(), prefix);
        Self {
            client,
            single,
            fresh,
            fill_limit: DEFAULT_FILL_LIMIT,
            kept: Mutex::new(Kept::default()),
        }
    }

    /// The Secrets Manager name of shard `n`.
    pub fn shard_id(&self, n: u32) -> String {
        format!("{}/{}", self.single.prefix(), shard_key(n))
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn keep_shard(&self, n: u32, shard: Option<Arc<Shard>>, read: ReadAt) {
        if self.fresh.ttl.is_zero() {
            return;
        }
        let mut kept = self.kept();
        match kept.shards.get(&n) {
            Some((_, have)) if have.is_after(&read) => {}
            _ => {
                kept.shards.insert(n, (shard, read));
            }
        }
    }

    /// Reads shard `n` from Secrets Manager: `None` if there is no such shard.
    async fn read_shard(&self, n: u32) -> Result<Option<Shard>, SecretsError> {
        let id = self.shard_id(n);
        let op = format!("read secret {id}");
        let read = ReadAt::now();
        // AWSCURRENT is what a read without a stage returns; naming it also makes moto (the
        // tests' AWS) return the version a stage move made current.
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&id)
            .version_stage(CURRENT)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                self.keep_shard(n, None, read);
                return Ok(None);
            }
            Err(e) => return Err(sdk(&op, e)),
        };
        let version = out
            .version_id
            .clone()
            .ok_or_else(|| SecretsError::Invalid {
                op: op.clone(),
                reason: "Secrets Manager returned no version id".into(),
            })?;
        let text =
            out.secret_string
                .map(SecretString::from)
                .ok_or_else(|| SecretsError::Invalid {
                    op: op.clone(),
                    reason: "it holds binary data, not text".into(),
                })?;
        let shard = Shard {
            version,
            entries: parse(&text).map_err(|reason| SecretsError::Invalid { op, reason })?,
        };
        let kept = Arc::new(Shard {
            version: shard.version.clone(),
            entries: shard.entries.clone(),
        });
        self.keep_shard(n, Some(kept), read);
        Ok(Some(shard))
    }

    /// Shard `n` as kept, or read again when the copy may be older than `set_at`.
    async fn shard(
        &self,
        n: u32,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<Option<Arc<Shard>>, SecretsError> {
        if let Some((shard, read)) = self.kept().shards.get(&n)
            && self.fresh.allows(*read, set_at)
        {
            return Ok(shard.clone());
        }
        Ok(self.read_shard(n).await?.map(Arc::new))
    }

    /// Every shard, read now, in order.
    async fn read_all(&self) -> Result<Vec<Shard>, SecretsError> {
        let mut shards = Vec::new();
        for n in 0..MAX_SHARDS {
            match self.read_shard(n).await? {
                Some(s) => shards.push(s),
                None => return Ok(shards),
            }
        }
        Err(too_many_shards())
    }

    /// The account's password: from the first shard that has it, else its own secret.
    async fn lookup(
        &self,
        account: &AccountId,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        for n in 0..MAX_SHARDS {
            let Some(shard) = self.shard(n, set_at).await? else {
                return self.own(account, set_at).await;
            };
            if let Some(value) = shard.entries.get(account.as_str()) {
                return Ok(value.clone());
            }
        }
        Err(too_many_shards())
    }

    /// The account's own secret (the layout before shards).
    async fn own(
        &self,
        account: &AccountId,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        let name = SecretName::AccountPassword(account.clone());
        let not_found = || SecretsError::NotFound {
            name: format!(
                "{} (nor in {}/accounts/*)",
                self.single.secret_id(&name),
                self.single.prefix()
            ),
        };
        if let Some((value, read)) = self.kept().own.get(account)
            && self.fresh.allows(*read, set_at)
        {
            return value.clone().ok_or_else(not_found);
        }
        let read = ReadAt::now();
        let value = match self.single.get(&name).await {
            Ok(value) => Some(value),
            Err(SecretsError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        if !self.fresh.ttl.is_zero() {
            self.kept()
                .own
                .insert(account.clone(), (value.clone(), read));
        }
        value.ok_or_else(not_found)
    }

    /// Writes `entries` as shard `n`: over the version `over` that was read, or as a new
    /// shard when `over` is `None`.
    async fn write(
        &self,
        n: u32,
        over: Option<&str>,
        entries: BTreeMap<String, SecretString>,
    ) -> Result<Written, SecretsError> {
        let id = self.shard_id(n);
        let op = format!("store secret {id}");
        let value = render(&entries);
        if value.expose_secret().len() > MAX_VALUE_BYTES {
            return Ok(Written::Full);
        }
        let Some(over) = over else {
            return match self
                .client
                .create_secret()
                .name(&id)
                .description("PEC connector: account passwords (JSON: account id -> password)")
                .secret_string(value.expose_secret())
                .send()
                .await
            {
                Ok(out) => Ok(Written::Done(Shard {
                    version: out.version_id.unwrap_or_default(),
                    entries,
                })),
                Err(e) if e.code() == Some("ResourceExistsException") => Ok(Written::Lost),
                Err(e) => Err(sdk(&op, e)),
            };
        };
        let version = request_token();
        match self
            .client
            .put_secret_value()
            .secret_id(&id)
            .secret_string(value.expose_secret())
            .client_request_token(&version)
            .version_stages(PENDING)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("LimitExceededException") => return Ok(Written::Full),
            Err(e) => return Err(sdk(&op, e)),
        }
        // The compare-and-swap: AWSCURRENT moves only if it is still on the version read.
        match self
            .client
            .update_secret_version_stage()
            .secret_id(&id)
            .version_stage(CURRENT)
            .remove_from_version_id(over)
            .move_to_version_id(&version)
            .send()
            .await
        {
            Ok(_) => Ok(Written::Done(Shard { version, entries })),
            Err(e)
                if matches!(
                    e.code(),
                    Some("InvalidParameterException" | "ResourceNotFoundException")
                ) =>
            {
                Ok(Written::Lost)
            }
            Err(e) => Err(sdk(&op, e)),
        }
    }

    /// Keeps a shard this process just wrote.
    fn wrote(&self, n: u32, shard: Shard) {
        self.keep_shard(n, Some(Arc::new(shard)), ReadAt::now());
    }

    async fn put_password(
        &self,
        account: &AccountId,
        value: &SecretString,
    ) -> Result<(), SecretsError> {
        let key = account.as_str();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let shards = self.read_all().await?;
            let written = match shards.iter().position(|s| s.entries.contains_key(key)) {
                Some(i) => {
                    let (n, shard) = (i as u32, &shards[i]);
                    let mut entries = shard.entries.clone();
                    entries.insert(key.to_owned(), value.clone());
                    if render(&entries).expose_secret().len() <= MAX_VALUE_BYTES {
                        match self.write(n, Some(&shard.version), entries).await? {
                            Written::Full => return Err(quota(account)),
                            other => Some((n, other)),
                        }
                    } else {
                        // It no longer fits in its shard: out of it first, then (at the next
                        // attempt) into one with room.
                        let mut entries = shard.entries.clone();
                        entries.remove(key);
                        match self.write(n, Some(&shard.version), entries).await? {
                            Written::Done(shard) => self.wrote(n, shard),
                            Written::Lost => {}
                            Written::Full => return Err(quota(account)),
                        }
                        continue;
                    }
                }
                None => self.add(&shards, key, value).await?,
            };
            match written {
                Some((n, Written::Done(shard))) => {
                    self.wrote(n, shard);
                    self.kept().own.remove(account);
                    // The account's own secret of the layout before shards, if it has one.
                    self.single
                        .delete(&SecretName::AccountPassword(account.clone()))
                        .await?;
                    tracing::debug!(account = %account, shard = n, attempt, "password stored");
                    return Ok(());
                }
                _ => continue,
            }
        }
        Err(contended(&format!("store the password of {account}")))
    }

    /// Adds a new account to the first shard with room (or a new shard). `None` when a write
    /// was lost.
    async fn add(
        &self,
        shards: &[Shard],
        key: &str,
        value: &SecretString,
    ) -> Result<Option<(u32, Written)>, SecretsError> {
        for (n, shard) in shards.iter().enumerate() {
            let mut entries = shard.entries.clone();
            entries.insert(key.to_owned(), value.clone());
            if render(&entries).expose_secret().len() > self.fill_limit {
                continue;
            }
            match self
                .write(n as u32, Some(shard.version.as_str()), entries)
                .await?
            {
                Written::Full => continue,
                Written::Lost => return Ok(None),
                done => return Ok(Some((n as u32, done))),
            }
        }
        let n = shards.len() as u32;
        let mut entries = BTreeMap::new();
        entries.insert(key.to_owned(), value.clone());
        match self.write(n, None, entries).await? {
            Written::Lost => Ok(None),
            Written::Full => Err(SecretsError::Invalid {
                op: "store a password".to_owned(),
                reason: "it does not fit in a secret".to_owned(),
            }),
            done => Ok(Some((n, done))),
        }
    }

    async fn delete_password(&self, account: &AccountId) -> Result<(), SecretsError> {
        let key = account.as_str();
        let mut attempt = 0;
        'again: loop {
            if attempt > 0 {
                backoff(attempt).await;
            }
            attempt += 1;
            if attempt > MAX_ATTEMPTS {
                return Err(contended(&format!("delete the password of {account}")));
            }
            let shards = self.read_all().await?;
            for (n, shard) in shards.iter().enumerate() {
                if !shard.entries.contains_key(key) {
                    continue;
                }
                let mut entries = shard.entries.clone();
                entries.remove(key);
                match self
                    .write(n as u32, Some(shard.version.as_str()), entries)
                    .await?
                {
                    Written::Done(shard) => self.wrote(n as u32, shard),
                    Written::Lost => continue 'again,
                    Written::Full => return Err(quota(account)),
                }
            }
            break;
        }
        self.kept().own.remove(account);
        self.single
            .delete(&SecretName::AccountPassword(account.clone()))
            .await?;
        tracing::debug!(account = %account, "password deleted");
        Ok(())
    }
}

/// The shard of `account` takes no more versions for now.
fn quota(account: &AccountId) -> SecretsError {
    SecretsError::Throttled {
        op: format!("change the password of {account}"),
        source: "its shard takes no more versions today (Secrets Manager's quota); retry later"
            .into(),
    }
}

/// A shard's text as entries. The reason never quotes the text (it holds passwords).
fn parse(text: &SecretString) -> Result<BTreeMap<String, SecretString>, String> {
    let map: BTreeMap<String, String> = serde_json::from_str(text.expose_secret())
        .map_err(|_| "it is not a JSON object of account ids and passwords".to_owned())?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, SecretString::from(v)))
        .collect())
}

fn render(entries: &BTreeMap<String, SecretString>) -> SecretString {
    let plain: BTreeMap<&str, &str> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    SecretString::from(serde_json::to_string(&plain).unwrap_or_default())
}

/// A fresh version id (Secrets Manager wants 32 to 64 characters).
fn request_token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = clock_bytes();
    }
    pec::encode::hex(&bytes)
}

fn clock_bytes() -> [u8; 16] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    nanos.to_le_bytes()
}

/// A short random wait before trying a change again, longer at each attempt.
async fn backoff(attempt: u32) {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let jitter = u64::from(u16::from_le_bytes(b)) % 50;
    let step = 10 * u64::from(attempt.min(10));
    tokio::time::sleep(Duration::from_millis(step + jitter)).await;
}

fn contended(op: &str) -> SecretsError {
    SecretsError::Throttled {
        op: op.to_owned(),
        source: "its shard kept changing under other writes".into(),
    }
}

fn too_many_shards() -> SecretsError {
    SecretsError::Invalid {
        op: "read the password shards".to_owned(),
        reason: format!("there are more than {MAX_SHARDS}"),
    }
}

#[async_trait]
impl Secrets for SharedSecrets {
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        match name {
            SecretName::AccountPassword(account) => self.put_password(account, value).await,
            _ => self.single.put(name, value).await,
        }
    }

    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        self.get_current(name, None).await
    }

    async fn get_current(
        &self,
        name: &SecretName,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        match name {
            SecretName::AccountPassword(account) => self.lookup(account, set_at).await,
            _ => self.single.get(name).await,
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
        match name {
            SecretName::AccountPassword(account) => self.delete_password(account).await,
            _ => self.single.delete(name).await,
        }
    }

    async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
        let op = format!("list secrets under {}/", self.single.prefix());
        let mut names = BTreeSet::new();
        for key in self.single.list_keys().await? {
            if is_shard_key(&key) {
                continue;
            }
            let name = SecretName::parse_key(&key).map_err(|e| SecretsError::Invalid {
                op: op.clone(),
                reason: e.to_string(),
            })?;
            names.insert(name);
        }
        for shard in self.read_all().await? {
            for key in shard.entries.keys() {
                let id = AccountId::parse(key).map_err(|e| SecretsError::Invalid {
                    op: op.clone(),
                    reason: e.to_string(),
                })?;
                names.insert(SecretName::AccountPassword(id));
            }
        }
        Ok(names.into_iter().collect())
    }

    fn forget(&self, name: &SecretName) {
        let SecretName::AccountPassword(account) = name else {
            return;
        };
        let mut kept = self.kept();
        kept.own.remove(account);
        kept.shards.retain(|_, (shard, _)| {
            shard
                .as_ref()
                .is_none_or(|s| !s.entries.contains_key(account.as_str()))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_text_round_trips_and_never_quotes_itself_in_errors() {
        let mut entries = BTreeMap::new();
        entries.insert("a-1".to_owned(), SecretString::from("p\"w\\1 è"));
        entries.insert("b-2".to_owned(), SecretString::from("x"));
        let text = render(&entries);
        let back = parse(&text).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back["a-1"].expose_secret(), "p\"w\\1 è");
        let bad = SecretString::from(r#"{"a-1": 12345678}"#);
        let reason = parse(&bad).unwrap_err();
        assert!(!reason.contains("12345678"), "{reason}");
    }

    #[test]
    fn shard_keys() {
        assert_eq!(shard_key(3), "accounts/3");
        assert!(is_shard_key("accounts/0") && is_shard_key("accounts/12"));
        assert!(
            !is_shard_key("account/a1")
                && !is_shard_key("accounts/")
                && !is_shard_key("accounts/x")
        );
        // No secret of the connector is named like a shard.
        assert!(SecretName::parse_key("accounts/0").is_err());
    }

    #[test]
    fn the_largest_password_fits_many_times_in_the_headroom() {
        // 1024 bytes of quotes, escaped: the worst an entry can grow by.
        let worst = SecretString::from("\"".repeat(1024));
        let mut entries = BTreeMap::new();
        entries.insert("a".repeat(AccountId::MAX_LEN), worst);
        let one = render(&entries).expose_secret().len();
        assert!(one < 2_200, "{one}");
        assert!((MAX_VALUE_BYTES - DEFAULT_FILL_LIMIT) / one >= 7);
    }
}
