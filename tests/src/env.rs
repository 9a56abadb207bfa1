//! Isolated adapter sets for tests, and a raw view of what they keep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use connector::ports::{Schedules, Secrets, Store};
use connector::schedules::eventbridge::EventBridgeSchedules;
use connector::schedules::local::LocalScheduler;
use connector::schedules::scheduler::SchedulerSchedules;
use connector::secrets::aws::AwsSecrets;
use connector::secrets::cache::{CachedSecrets, Freshness};
use connector::secrets::file::FileSecrets;
use connector::secrets::shared::SharedSecrets;
use connector::store::dynamo::{DynamoStore, TableDefinition};
use connector::store::sqlite::SqliteStore;

/// The ARN the EventBridge adapter targets in tests (moto does not check it exists).
pub const POLLER_ARN: &str = "arn:aws:lambda:eu-south-1:123456789012:function:pec-connector-poller";
/// The role the Scheduler adapter's schedules invoke the poller with in tests.
pub const SCHEDULER_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/pec-connector-scheduler";

/// One test's adapters, and a way to see what they keep underneath.
pub struct Env {
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn Secrets>,
    pub schedules: Arc<dyn Schedules>,
    pub raw: Box<dyn Raw>,
    /// Keeps the embedded environment's directory alive.
    pub _dir: Option<tempfile::TempDir>,
    /// The local scheduler's poll requests (nobody runs polls in these tests).
    pub polls: Option<tokio::sync::mpsc::Receiver<connector::domain::PollRequest>>,
}

/// What an environment's backends hold, read around the adapters.
#[async_trait]
pub trait Raw: Send + Sync {
    /// Every stored item / row, rendered as text.
    async fn state(&self) -> Vec<String>;
    /// The raw bytes behind the state (database files), if any.
    fn state_bytes(&self) -> Vec<u8>;
    /// The names of the secrets kept.
    async fn secrets(&self) -> Vec<String>;
    /// Every schedule and what it triggers, rendered as text.
    async fn schedules(&self) -> Vec<String>;
    /// The name prefix of the table, secrets and rules (AWS only).
    fn prefix(&self) -> Option<String> {
        None
    }
}

/// A Zendesk client of the simulator's agent, with a 10 s timeout and `retry`.
pub fn simulator_client(
    sim: &sandbox::ZendeskSimulator,
    retry: zendesk::RetryPolicy,
) -> Arc<zendesk::ZendeskClient> {
    Arc::new(
        zendesk::ZendeskClient::new(zendesk::ZendeskConfig {
            base_url: sim.base_url().to_owned(),
            auth: zendesk::Auth::Basic {
                email: sim.credentials().agent_email.clone(),
                api_token: secrecy::SecretString::from(sim.credentials().api_token.clone()),
            },
            timeout: Duration::from_secs(10),
            retry,
        })
        .expect("zendesk client"),
    )
}

/// A short name unique to this test run and test: `t` + 8 hex digits.
pub fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let mix = (std::process::id().wrapping_mul(2_654_435_761)) ^ nanos ^ n.wrapping_mul(40_503);
    format!("t{mix:08x}{n:x}")
}

// ----- embedded -----

/// The embedded adapters in a fresh temporary directory: `state.db` and `secrets/`.
pub async fn embedded() -> Env {
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("state.db");
    let store = SqliteStore::open(&db).expect("open sqlite store");
    let secrets = FileSecrets::open(&dir.path().join("secrets")).expect("open secrets dir");
    let (scheduler, polls) = LocalScheduler::new(16);
    let scheduler = Arc::new(scheduler);
    Env {
        store: Arc::new(store),
        secrets: Arc::new(secrets),
        schedules: scheduler.clone(),
        raw: Box::new(EmbeddedRaw {
            db,
            secrets_dir: dir.path().join("secrets"),
            scheduler,
        }),
        _dir: Some(dir),
        polls: Some(polls),
    }
}

struct EmbeddedRaw {
    db: PathBuf,
    secrets_dir: PathBuf,
    scheduler: Arc<LocalScheduler>,
}

#[async_trait]
impl Raw for EmbeddedRaw {
    async fn state(&self) -> Vec<String> {
        dump_sqlite(&self.db)
    }

    fn state_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = PathBuf::from(format!("{}{suffix}", self.db.display()));
            if let Ok(b) = std::fs::read(&path) {
                bytes.extend(b);
            }
        }
        bytes
    }

    async fn secrets(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.secrets_dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    async fn schedules(&self) -> Vec<String> {
        self.scheduler
            .list()
            .await
            .expect("list local schedules")
            .into_iter()
            .map(|s| format!("{s:?}"))
            .collect()
    }
}

/// Every row of every table of a SQLite file, as `table: col=value, ...`.
pub fn dump_sqlite(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open sqlite file");
    let tables: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
            .expect("list tables");
        stmt.query_map([], |r| r.get(0))
            .expect("list tables")
            .map(|r| r.expect("table name"))
            .collect()
    };
    let mut rows = Vec::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let mut q = stmt.query([]).expect("query");
        while let Some(row) = q.next().expect("row") {
            let cells: Vec<String> = (0..columns.len())
                .map(|i| {
                    let v: rusqlite::types::Value = row.get(i).expect("cell");
                    format!("{}={v:?}", columns[i])
                })
                .collect();
            rows.push(format!("{table}: {}", cells.join(", ")));
        }
    }
    rows
}

// ----- AWS through moto -----

/// The moto endpoint the AWS tests use.
pub fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

/// An SDK config aimed at moto, after checking moto answers. Panics with how to start it.
pub async fn moto_config() -> SdkConfig {
    let endpoint = moto_endpoint();
    let hostport = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();
    let reachable = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(hostport.clone()),
    )
    .await;
    if !matches!(reachable, Ok(Ok(_))) {
        panic!(
            "moto server not reachable at {endpoint}; run infra/moto.sh start \
             (or bash infra/test.sh, which starts it)"
        );
    }
    let creds = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static");
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-south-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .load()
        .await
}

/// The AWS adapters on moto, with a fresh table, secret prefix and rule prefix (schedules as
/// EventBridge rules).
pub async fn aws() -> Env {
    aws_with(|b| b).await
}

/// Like [`aws`], with the schedules as EventBridge Scheduler schedules in a fresh schedule group
/// (the deployment's default kind), limited to `limit` schedules.
pub async fn aws_scheduler_limited(limit: usize) -> Env {
    let mut env = aws().await;
    let conf = moto_config().await;
    let client = aws_sdk_scheduler::Client::new(&conf);
    let group = scheduler_group(&client).await;
    let schedules = SchedulerSchedules::new(
        client.clone(),
        group.clone(),
        POLLER_ARN,
        SCHEDULER_ROLE_ARN,
    )
    .expect("scheduler schedules")
    .with_limit(limit);
    env.schedules = Arc::new(schedules);
    env.raw = Box::new(SchedulerRaw {
        inner: env.raw,
        client,
        group,
    });
    env
}

/// [`aws_scheduler_limited`] with AWS's default quota.
pub async fn aws_scheduler() -> Env {
    aws_scheduler_limited(SchedulerSchedules::DEFAULT_LIMIT).await
}

/// A fresh schedule group on moto (as the stack creates one).
pub async fn scheduler_group(client: &aws_sdk_scheduler::Client) -> String {
    let group = unique_name();
    client
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .expect("create a schedule group on moto");
    group
}

/// What an environment with Scheduler schedules keeps: [`AwsRaw`]'s, with the group's schedules.
struct SchedulerRaw {
    inner: Box<dyn Raw>,
    client: aws_sdk_scheduler::Client,
    group: String,
}

#[async_trait]
impl Raw for SchedulerRaw {
    async fn state(&self) -> Vec<String> {
        self.inner.state().await
    }

    fn prefix(&self) -> Option<String> {
        self.inner.prefix()
    }

    fn state_bytes(&self) -> Vec<u8> {
        self.inner.state_bytes()
    }

    async fn secrets(&self) -> Vec<String> {
        self.inner.secrets().await
    }

    async fn schedules(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut next = None;
        loop {
            let out = self
                .client
                .list_schedules()
                .group_name(&self.group)
                .set_next_token(next.take())
                .send()
                .await
                .expect("list schedules");
            for summary in out.schedules() {
                let name = summary.name().unwrap_or_default();
                let s = self
                    .client
                    .get_schedule()
                    .group_name(&self.group)
                    .name(name)
                    .send()
                    .await
                    .expect("get schedule");
                let target = s.target();
                found.push(format!(
                    "schedule {}/{name} {:?} {:?} start {:?} window {:?} target {:?} role {:?} {:?}",
                    self.group,
                    s.schedule_expression(),
                    s.state(),
                    s.start_date().map(|d| d.secs()),
                    s.flexible_time_window().map(|w| w.mode().clone()),
                    target.map(|t| t.arn()),
                    target.map(|t| t.role_arn()),
                    target.and_then(|t| t.input()),
                ));
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        found.sort();
        found
    }
}

/// Like [`aws`], with account passwords many to a secret ([`SharedSecrets`]) as deployments
/// keep them by default.
pub async fn aws_shared() -> Env {
    let mut env = aws().await;
    let name = env.raw.prefix().expect("the AWS environment's prefix");
    let sm = aws_sdk_secretsmanager::Client::new(&moto_config().await);
    env.secrets = Arc::new(SharedSecrets::new(sm, name, Freshness::DEFAULT));
    env
}

/// The embedded adapters with passwords kept in the process, as `pec-connector serve` has them.
pub async fn embedded_cached() -> Env {
    let mut env = embedded().await;
    let dir = env
        ._dir
        .as_ref()
        .expect("embedded directory")
        .path()
        .join("secrets");
    let secrets = FileSecrets::open(&dir).expect("open secrets dir");
    env.secrets = Arc::new(CachedSecrets::new(secrets, Freshness::DEFAULT));
    env
}

/// A Secrets Manager client on moto whose requests `counter` counts.
pub async fn counted_secrets_client(
    counter: &crate::counting::SecretsCounter,
) -> aws_sdk_secretsmanager::Client {
    let conf = moto_config().await;
    aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&conf)
            .interceptor(counter.clone())
            .build(),
    )
}

/// Like [`aws`], letting the caller adjust the DynamoDB client (e.g. add a counting interceptor).
pub async fn aws_with(
    ddb: impl FnOnce(aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder,
) -> Env {
    let conf = moto_config().await;
    let name = unique_name();
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        ddb(aws_sdk_dynamodb::config::Builder::from(&conf)).build(),
    );
    TableDefinition::create(&ddb, &name)
        .await
        .expect("create the test table on moto");
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let eb = aws_sdk_eventbridge::Client::new(&conf);
    let schedules = EventBridgeSchedules::new(eb.clone(), name.clone(), POLLER_ARN)
        .expect("eventbridge schedules");
    Env {
        store: Arc::new(DynamoStore::new(ddb.clone(), name.clone())),
        secrets: Arc::new(AwsSecrets::new(sm.clone(), name.clone())),
        schedules: Arc::new(schedules),
        raw: Box::new(AwsRaw { ddb, sm, eb, name }),
        _dir: None,
        polls: None,
    }
}

struct AwsRaw {
    ddb: aws_sdk_dynamodb::Client,
    sm: aws_sdk_secretsmanager::Client,
    eb: aws_sdk_eventbridge::Client,
    name: String,
}

/// An attribute value as its `Debug` text, with map keys in order (a map's `Debug` follows its
/// hash order, which differs from one read to the next).
fn render(value: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    use aws_sdk_dynamodb::types::AttributeValue;
    match value {
        AttributeValue::M(map) => {
            let mut entries: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k:?}: {}", render(v)))
                .collect();
            entries.sort();
            format!("M({{{}}})", entries.join(", "))
        }
        AttributeValue::L(list) => {
            let items: Vec<String> = list.iter().map(render).collect();
            format!("L([{}])", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

#[async_trait]
impl Raw for AwsRaw {
    async fn state(&self) -> Vec<String> {
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .ddb
                .scan()
                .table_name(&self.name)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan the test table");
            for item in out.items.unwrap_or_default() {
                let mut attrs: Vec<String> = item
                    .iter()
                    .map(|(k, v)| format!("{k}={}", render(v)))
                    .collect();
                attrs.sort();
                rows.push(attrs.join(", "));
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        rows
    }

    fn state_bytes(&self) -> Vec<u8> {
        Vec::new()
    }

    fn prefix(&self) -> Option<String> {
        Some(self.name.clone())
    }

    /// Every secret's name; a password shard's also with the accounts it holds
    /// (`<prefix>/accounts/0 [a-1, b-2]`).
    async fn secrets(&self) -> Vec<String> {
        let mut rendered = Vec::new();
        for name in self.secret_names().await {
            let is_shard = name
                .strip_prefix(&format!("{}/", self.name))
                .is_some_and(connector::secrets::is_shard_key);
            if !is_shard {
                rendered.push(name);
                continue;
            }
            let value = self
                .sm
                .get_secret_value()
                .secret_id(&name)
                .version_stage("AWSCURRENT")
                .send()
                .await
                .expect("read a password shard")
                .secret_string
                .unwrap_or_default();
            let entries: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&value).expect("a shard is a JSON object of strings");
            let ids: Vec<&str> = entries.keys().map(String::as_str).collect();
            rendered.push(format!("{name} [{}]", ids.join(", ")));
        }
        rendered
    }

    async fn schedules(&self) -> Vec<String> {
        self.schedule_list().await
    }
}

impl AwsRaw {
    async fn secret_names(&self) -> Vec<String> {
        // Everything on moto whose name carries this test's prefix, deleted-pending included
        // (every page: a shared moto holds the secrets of every test).
        let mut names: Vec<String> = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .sm
                .list_secrets()
                .include_planned_deletion(true)
                .max_results(100)
                .set_next_token(next.take())
                .send()
                .await
                .expect("list secrets");
            names.extend(
                out.secret_list
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| s.name)
                    .filter(|n| n.starts_with(&format!("{}/", self.name))),
            );
            match out.next_token {
                Some(t) if !t.is_empty() => next = Some(t),
                _ => break,
            }
        }
        names.sort();
        names
    }

    async fn schedule_list(&self) -> Vec<String> {
        let out = self
            .eb
            .list_rules()
            .name_prefix(&self.name)
            .send()
            .await
            .expect("list rules");
        let mut found = Vec::new();
        for rule in out.rules.unwrap_or_default() {
            let name = rule.name.unwrap_or_default();
            let targets = self
                .eb
                .list_targets_by_rule()
                .rule(&name)
                .send()
                .await
                .expect("list targets")
                .targets
                .unwrap_or_default();
            found.push(format!(
                "rule {name} {:?} {:?} targets {:?}",
                rule.schedule_expression,
                rule.state,
                targets
                    .iter()
                    .map(|t| (&t.id, &t.input))
                    .collect::<Vec<_>>()
            ));
        }
        found
    }
}
