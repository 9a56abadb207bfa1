//! One poll schedule per account, past EventBridge's 300 rules: the EventBridge Scheduler
//! adapter through the real AWS SDK to moto server (its contract, a thousand schedules created,
//! listed page by page and deleted), and registration at the quota: refused before anything is
//! created, and a quota error while creating the schedule (from a stand-in for the AWS endpoint,
//! as moto enforces no quota) leaves nothing behind either, for both kinds of schedules.
//!
//! moto's EventBridge Scheduler supports what the adapter calls (CreateSchedule,
//! UpdateSchedule, GetSchedule, DeleteSchedule, ListSchedules with pages, CreateScheduleGroup);
//! it neither invokes targets nor enforces quotas.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use connector::domain::{AccountId, PollInterval, Schedule};
use connector::ports::Schedules;
use connector::schedules::SchedulesError;
use connector::schedules::eventbridge::EventBridgeSchedules;
use connector::schedules::scheduler::SchedulerSchedules;
use e2e::admin_env::AdminEnv;
use e2e::env::{
    Env, POLLER_ARN, SCHEDULER_ROLE_ARN, aws, aws_scheduler_limited, moto_config, scheduler_group,
    unique_name,
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

e2e::contract_tests!(e2e::env::aws_scheduler;
    schedules_lifecycle,
    delete_account_leaves_nothing,
);

/// Runs `f` on every item, `width` at once; panics on the first failure.
async fn all<T, F, Fut>(items: Vec<T>, width: usize, f: F)
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), SchedulesError>> + Send + 'static,
{
    let mut running: JoinSet<Result<(), SchedulesError>> = JoinSet::new();
    for item in items {
        if running.len() >= width
            && let Some(done) = running.join_next().await
        {
            done.expect("task").expect("schedule call");
        }
        running.spawn(f(item));
    }
    while let Some(done) = running.join_next().await {
        done.expect("task").expect("schedule call");
    }
}

fn account(n: usize) -> AccountId {
    AccountId::parse(&format!("ufficio-{n:04}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_schedules_are_created_listed_page_by_page_and_deleted() {
    const N: usize = 1000;
    let conf = moto_config().await;
    let client = aws_sdk_scheduler::Client::new(&conf);
    let group = scheduler_group(&client).await;
    let schedules = Arc::new(
        SchedulerSchedules::new(
            client.clone(),
            group.clone(),
            POLLER_ARN,
            SCHEDULER_ROLE_ARN,
        )
        .unwrap()
        .with_limit(N),
    );
    let wanted: Vec<Schedule> = (0..N)
        .map(|n| Schedule {
            account: account(n),
            interval: PollInterval::minutes(1 + (n % 60) as u32).unwrap(),
            enabled: n % 7 != 0,
        })
        .collect();

    let started = Instant::now();
    let s = schedules.clone();
    all(wanted.clone(), 32, move |schedule| {
        let s = s.clone();
        async move { s.put(&schedule).await }
    })
    .await;
    let created = started.elapsed();

    // Full: no room for the next one.
    let capacity = schedules.capacity().await.unwrap().expect("a quota");
    assert_eq!((capacity.used, capacity.limit, capacity.room()), (N, N, 0));

    let started = Instant::now();
    let listed = schedules.list().await.unwrap();
    let listing = started.elapsed();
    assert_eq!(listed, wanted, "every schedule, as it was put");

    // Page by page as the adapter reads them: 100 a page, each name once.
    let mut pages = 0;
    let mut names = Vec::new();
    let mut next = None;
    loop {
        let out = client
            .list_schedules()
            .group_name(&group)
            .max_results(100)
            .set_next_token(next.take())
            .send()
            .await
            .unwrap();
        pages += 1;
        assert!(out.schedules().len() <= 100);
        names.extend(out.schedules().iter().filter_map(|s| s.name.clone()));
        match out.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_owned()),
            _ => break,
        }
    }
    names.sort();
    names.dedup();
    assert_eq!((names.len(), pages >= N / 100), (N, true), "{pages} pages");

    // What Scheduler keeps: the poller, the role, the account's input, no flexible window, and
    // a start on the account's phase of its interval.
    for schedule in wanted.iter().step_by(97) {
        let s = client
            .get_schedule()
            .group_name(&group)
            .name(schedule.account.as_str())
            .send()
            .await
            .unwrap();
        let target = s.target().expect("target");
        assert_eq!(
            (target.arn(), target.role_arn()),
            (POLLER_ARN, SCHEDULER_ROLE_ARN)
        );
        assert_eq!(
            target.input(),
            Some(format!("{{\"account_id\":\"{}\"}}", schedule.account).as_str())
        );
        assert_eq!(
            s.flexible_time_window().map(|w| w.mode().as_str()),
            Some("OFF")
        );
        let period = i64::from(schedule.interval.as_minutes()) * 60;
        let start = s.start_date().expect("a start date").secs();
        assert_eq!(start.rem_euclid(period), schedule.phase().as_secs() as i64);
    }

    let started = Instant::now();
    let s = schedules.clone();
    all(wanted.clone(), 32, move |schedule| {
        let s = s.clone();
        async move { s.delete(&schedule.account).await }
    })
    .await;
    let deleted = started.elapsed();
    assert!(schedules.list().await.unwrap().is_empty());
    assert_eq!(schedules.capacity().await.unwrap().unwrap().used, 0);

    eprintln!(
        "{N} Scheduler schedules on moto: created in {:.1} s, listed in {:.1} s ({pages} pages \
         and {N} reads), deleted in {:.1} s",
        created.as_secs_f64(),
        listing.as_secs_f64(),
        deleted.as_secs_f64()
    );
}

/// Everything a refused registration could have touched, as seen around the adapters.
#[derive(Debug, PartialEq)]
struct Footprint {
    secrets: Vec<String>,
    state: Vec<String>,
    schedules: Vec<String>,
    zendesk_requests: usize,
    triggers: usize,
    webhooks: usize,
}

async fn footprint(env: &AdminEnv) -> Footprint {
    let mut state = env.env.raw.state().await;
    state.sort();
    Footprint {
        secrets: env.env.raw.secrets().await,
        state,
        schedules: env.env.raw.schedules().await,
        zendesk_requests: env.sim.requests().len(),
        triggers: env.sim.triggers().len(),
        webhooks: env.sim.webhooks().len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_over_the_quota_is_refused_before_anything_is_created() {
    let env = AdminEnv::on(aws_scheduler_limited(2).await, |s| s, |_| {}).await;
    let first = env.new_address("quota-1");
    let second = env.new_address("quota-2");
    for address in [&first, &second] {
        let answer = env
            .admin("POST", "/accounts", Some(&env.registration(address)))
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
    }
    let before = footprint(&env).await;
    assert_eq!(before.schedules.len(), 2, "{before:?}");

    let third = env.new_address("quota-3");
    let refused = env
        .admin("POST", "/accounts", Some(&env.registration(&third)))
        .await;
    assert_eq!(refused.status, 409, "{refused:?}");
    let message = refused.error();
    for words in [
        "no room for its poll schedule",
        "2 of 2 EventBridge Scheduler schedules",
        "ScheduleQuota",
        "Number of schedules",
        "Nothing was created",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    assert_eq!(footprint(&env).await, before, "nothing of {third} anywhere");
    let listed = env.admin("GET", "/accounts", None).await;
    assert_eq!(listed.body["accounts"].as_array().map(Vec::len), Some(2));

    // At the quota, a registered address can still be registered again (an update).
    let again = env
        .admin("POST", "/accounts", Some(&env.registration(&first)))
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    // Room made, the refused one registers.
    let id = env.admin("GET", "/accounts", None).await.body["accounts"][1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let gone = env.admin("DELETE", &format!("/accounts/{id}"), None).await;
    assert_eq!(gone.status, 204, "{gone:?}");
    let now = env
        .admin("POST", "/accounts", Some(&env.registration(&third)))
        .await;
    assert_eq!(now.status, 201, "{now:?}");
}

// ----- a quota error from AWS itself -----

/// A stand-in for the EventBridge and EventBridge Scheduler endpoints that lists nothing and
/// refuses every new schedule as AWS does at its quota: Scheduler's CreateSchedule with
/// `402 ServiceQuotaExceededException`, EventBridge's PutRule with `LimitExceededException`.
/// Reads and deletes find nothing. Returns its URL.
async fn quota_reached_endpoint() -> String {
    async fn scheduler(
        method: axum::http::Method,
        uri: axum::http::Uri,
    ) -> axum::response::Response {
        let error = |status: StatusCode, code: &str, message: &str| {
            (
                status,
                [
                    ("x-amzn-errortype", code.to_owned()),
                    ("content-type", "application/json".to_owned()),
                ],
                json!({"Message": message}).to_string(),
            )
                .into_response()
        };
        match (method.as_str(), uri.path()) {
            ("GET", "/schedules") => axum::Json(json!({"Schedules": []})).into_response(),
            ("POST", _) => error(
                StatusCode::PAYMENT_REQUIRED,
                "ServiceQuotaExceededException",
                "Maximum allowed number of schedules in the account reached.",
            ),
            _ => error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "Schedule does not exist.",
            ),
        }
    }
    async fn events(headers: HeaderMap) -> axum::response::Response {
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let error = |code: &str, message: &str| {
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/x-amz-json-1.1")],
                json!({"__type": code, "message": message}).to_string(),
            )
                .into_response()
        };
        match target {
            "AWSEvents.ListRules" => (
                [("content-type", "application/x-amz-json-1.1")],
                json!({"Rules": []}).to_string(),
            )
                .into_response(),
            "AWSEvents.PutRule" => error(
                "LimitExceededException",
                "The requested resource exceeds the maximum number allowed.",
            ),
            _ => error("ResourceNotFoundException", "Rule does not exist."),
        }
    }
    let app = axum::Router::new()
        .route("/", axum::routing::post(events))
        .fallback(scheduler);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The moto environment with its schedules on the stand-in endpoint, of either kind.
async fn env_at_quota(kind: &str) -> (Env, Arc<dyn Schedules>) {
    let mut env = aws().await;
    let url = quota_reached_endpoint().await;
    let conf = moto_config().await.into_builder().endpoint_url(url).build();
    let schedules: Arc<dyn Schedules> = match kind {
        "scheduler" => Arc::new(
            SchedulerSchedules::new(
                aws_sdk_scheduler::Client::new(&conf),
                unique_name(),
                POLLER_ARN,
                SCHEDULER_ROLE_ARN,
            )
            .unwrap(),
        ),
        _ => Arc::new(
            EventBridgeSchedules::new(
                aws_sdk_eventbridge::Client::new(&conf),
                unique_name(),
                POLLER_ARN,
            )
            .unwrap(),
        ),
    };
    env.schedules = schedules.clone();
    (env, schedules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_error_from_aws_is_a_quota_error_not_throttling() {
    for (kind, quota, code) in [
        (
            "scheduler",
            "Number of schedules",
            "ServiceQuotaExceededException",
        ),
        ("rules", "\"Rules\"", "exceeds the maximum number allowed"),
    ] {
        let (_env, schedules) = env_at_quota(kind).await;
        let err = schedules
            .put(&Schedule {
                account: account(1),
                interval: PollInterval::DEFAULT,
                enabled: true,
            })
            .await
            .unwrap_err();
        assert!(err.is_quota() && !err.is_transient(), "{kind}: {err:?}");
        let text = err.to_string();
        assert!(
            text.contains(quota) && text.contains(code) && text.contains("Service Quotas"),
            "{kind}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_error_while_creating_the_schedule_leaves_nothing_behind() {
    for (kind, quota) in [("scheduler", "Number of schedules"), ("rules", "\"Rules\"")] {
        let (env, _) = env_at_quota(kind).await;
        let env = AdminEnv::on(env, |s| s, |_| {}).await;
        let before = footprint(&env).await;
        let address = env.new_address("over");
        let refused = env
            .admin("POST", "/accounts", Some(&env.registration(&address)))
            .await;
        assert_eq!(refused.status, 409, "{kind}: {refused:?}");
        let message = refused.error();
        assert!(
            message.contains(quota) && message.contains("Nothing was created"),
            "{kind}: {message}"
        );
        let after = footprint(&env).await;
        assert_eq!(after, before, "{kind}: nothing of {address} anywhere");
        let listed = env.admin("GET", "/accounts", None).await;
        assert_eq!(listed.body["accounts"], Value::Array(vec![]), "{kind}");
    }
}
