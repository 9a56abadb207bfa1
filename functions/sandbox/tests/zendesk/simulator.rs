//! The Zendesk simulator driven over HTTP by a plain reqwest client.

use std::time::{Duration, Instant};

use reqwest::{Client, RequestBuilder, StatusCode};
use sandbox::ZendeskSimulator;
use sandbox::zendesk::{COMMENT_BODY_LIMIT, Fault, RequestLimit};
use serde_json::{Value, json};

struct Api {
    sim: ZendeskSimulator,
    http: Client,
}

impl Api {
    async fn start() -> Api {
        Api {
            sim: ZendeskSimulator::start().await.expect("simulator starts"),
            http: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    fn auth(&self, request: RequestBuilder) -> RequestBuilder {
        let c = self.sim.credentials();
        request.basic_auth(format!("{}/token", c.agent_email), Some(&c.api_token))
    }

    fn get(&self, path: &str) -> RequestBuilder {
        self.auth(self.http.get(self.url(path)))
    }

    fn post(&self, path: &str) -> RequestBuilder {
        self.auth(self.http.post(self.url(path)))
    }

    fn put(&self, path: &str) -> RequestBuilder {
        self.auth(self.http.put(self.url(path)))
    }

    async fn create(&self, body: &Value) -> Value {
        let response = self
            .post("/api/v2/tickets")
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    async fn upload(&self, name: &str, data: &'static [u8], token: Option<&str>) -> Value {
        let mut path = format!("/api/v2/uploads?filename={name}");
        if let Some(t) = token {
            path.push_str(&format!("&token={t}"));
        }
        let response = self
            .post(&path)
            .header("content-type", "application/pdf")
            .body(data)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

fn pec_ticket(external_id: &str) -> Value {
    json!({"ticket": {
        "subject": "Invio File 7339338",
        "requester": {"email": "sdi03@pec.fatturapa.it", "name": "SdI"},
        "comment": {"html_body": "<p>Testo {{ticket.id}}</p>", "public": true},
        "external_id": external_id,
        "tags": ["pec", "pec_inbound"],
        "custom_fields": [{"id": 360001234567u64, "value": "opec288"}]
    }})
}

#[tokio::test]
async fn creates_a_ticket_with_requester_tags_fields_and_first_comment() {
    let api = Api::start().await;
    // A custom field an admin made; a value for a field that does not exist is dropped, as
    // Zendesk drops it.
    let field = api
        .post("/api/v2/ticket_fields")
        .json(&json!({"ticket_field": {"type": "text", "title": "PEC identificativo"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(field.status(), StatusCode::CREATED);
    let field = field.json::<Value>().await.unwrap()["ticket_field"]["id"]
        .as_u64()
        .unwrap();
    let mut ticket = pec_ticket("pec:1");
    ticket["ticket"]["custom_fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": field, "value": "opec289"}));
    let body = api.create(&ticket).await;
    let id = body["ticket"]["id"].as_u64().unwrap();
    assert_eq!(body["ticket"]["status"], "new");
    assert_eq!(body["ticket"]["external_id"], "pec:1");

    let ticket = api.sim.ticket(id).unwrap();
    assert_eq!(ticket.subject, "Invio File 7339338");
    assert_eq!(ticket.tags, ["pec", "pec_inbound"]);
    assert_eq!(ticket.custom_fields, [(field, json!("opec289"))]);
    let requester = api
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == ticket.requester_id)
        .unwrap();
    assert_eq!(
        (requester.email.as_str(), requester.role.as_str()),
        ("sdi03@pec.fatturapa.it", "end-user")
    );
    let comments = api.sim.comments(id);
    assert_eq!(comments.len(), 1);
    // The requester authors the first comment, and placeholders stay literal for end users.
    assert_eq!(comments[0].author_id, ticket.requester_id);
    assert_eq!(comments[0].html_body, "<p>Testo {{ticket.id}}</p>");
    assert!(comments[0].public);

    // A second ticket from the same address reuses the user.
    let second = api.create(&pec_ticket("pec:2")).await;
    assert_eq!(
        second["ticket"]["requester_id"].as_u64(),
        Some(ticket.requester_id)
    );
}

#[tokio::test]
async fn paths_answer_with_the_json_suffix_too() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:json")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    let shown: Value = api
        .get(&format!("/api/v2/tickets/{id}.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["ticket"]["id"], id);
    let listed = api
        .get("/api/v2/tickets.json?external_id=pec:json")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["tickets"][0]["id"], id, "{listed}");
    let nowhere = api.get("/api/v2/nowhere.json").send().await.unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    let unauthenticated = reqwest::Client::new()
        .get(api.url("/api/v2/tickets.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn idempotency_key_replays_the_same_response_and_rejects_another_body() {
    let api = Api::start().await;
    let send = |body: Value| {
        api.post("/api/v2/tickets")
            .header("Idempotency-Key", "pec-in:abc")
            .json(&body)
            .send()
    };
    let first = send(pec_ticket("pec:1")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(first.headers()["x-idempotency-lookup"], "miss");
    let first: Value = first.json().await.unwrap();

    let again = send(pec_ticket("pec:1")).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["x-idempotency-lookup"], "hit");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(api.sim.tickets().len(), 1);

    let other = send(pec_ticket("pec:other")).await.unwrap();
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"],
        "IdempotentRequestError"
    );
    assert_eq!(api.sim.tickets().len(), 1);
}

#[tokio::test]
async fn an_expired_idempotency_key_creates_a_new_ticket() {
    let api = Api::start().await;
    let send = || {
        api.post("/api/v2/tickets")
            .header("Idempotency-Key", "pec-in:abc")
            .json(&pec_ticket("pec:1"))
            .send()
    };
    send().await.unwrap();
    api.sim.expire_idempotency_keys();
    let again = send().await.unwrap();
    assert_eq!(again.headers()["x-idempotency-lookup"], "miss");
    assert_eq!(api.sim.tickets().len(), 2);
}

#[tokio::test]
async fn closed_tickets_refuse_updates() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    assert!(api.sim.set_status(id, "closed"));
    let response = api
        .put(&format!("/api/v2/tickets/{id}"))
        .json(&json!({"ticket": {"comment": {"body": "late", "public": false}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.sim.comments(id).len(), 1);
}

#[tokio::test]
async fn rejects_missing_or_wrong_credentials_with_the_documented_body() {
    let api = Api::start().await;
    for request in [
        api.http.get(api.url("/api/v2/tickets/1")),
        api.http
            .get(api.url("/api/v2/tickets/1"))
            .basic_auth("api@pec-connector.test/token", Some("wrong")),
        api.http
            .get(api.url("/api/v2/tickets/1"))
            .basic_auth("api@pec-connector.test", Some("sandbox-api-token")),
        api.http
            .get(api.url("/api/v2/tickets/1"))
            .bearer_auth("wrong"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "Couldn't authenticate you"})
        );
    }
    let oauth = api
        .http
        .get(api.url("/api/v2/tickets"))
        .bearer_auth(&api.sim.credentials().oauth_token)
        .send()
        .await
        .unwrap();
    assert_eq!(oauth.status(), StatusCode::OK);
}

#[tokio::test]
async fn not_found_and_validation_errors_have_zendesk_bodies() {
    let api = Api::start().await;
    let missing = api.get("/api/v2/tickets/999999").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "RecordNotFound", "description": "Not found"})
    );

    let no_comment = api
        .post("/api/v2/tickets")
        .json(&json!({"ticket": {"subject": "x", "requester": {"email": "a@b.it"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_comment.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = no_comment.json().await.unwrap();
    assert_eq!(body["error"], "RecordInvalid");
    assert_eq!(body["details"]["description"][0]["error"], "BlankValue");

    let bad_email = api
        .post("/api/v2/tickets")
        .json(&json!({"ticket": {"requester": {"email": "not-an-address"}, "comment": {"body": "x"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_email.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_email.json::<Value>().await.unwrap()["details"]["requester"].is_array());

    let bad_token = api
        .post("/api/v2/tickets")
        .json(&json!({"ticket": {"comment": {"body": "x", "uploads": ["nope"]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_token.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(api.sim.tickets().is_empty());
}

#[tokio::test]
async fn update_appends_internal_notes_with_uploads_and_edits_tags() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();

    let first = api.upload("ricevuta.eml", b"receipt bytes", None).await;
    let token = first["upload"]["token"].as_str().unwrap().to_string();
    let second = api.upload("daticert.xml", b"<xml/>", Some(&token)).await;
    assert_eq!(second["upload"]["token"], token.as_str());
    assert_eq!(second["upload"]["attachments"].as_array().unwrap().len(), 2);

    let response = api
        .put(&format!("/api/v2/tickets/{id}"))
        .json(&json!({"ticket": {
            "comment": {"html_body": "<p>Consegna {{ticket.id}} {{fake}}</p>", "public": false, "uploads": [token]},
            "additional_tags": ["pec_delivered"],
            "remove_tags": ["pec_inbound"]
        }}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["audit"]["events"][0]["type"], "Comment");
    let note_id = body["audit"]["events"][0]["id"].as_u64().unwrap();

    let ticket = api.sim.ticket(id).unwrap();
    assert_eq!(ticket.tags, ["pec", "pec_delivered"]);
    let note = ticket.comments.last().unwrap();
    assert_eq!(note.id, note_id);
    assert!(!note.public);
    assert_eq!(note.author_id, api.sim.agent_id());
    // Agent-authored: placeholders render and unknown ones vanish, as in Zendesk.
    assert_eq!(note.html_body, format!("<p>Consegna {id} </p>"));
    let names: Vec<String> = note
        .attachment_ids
        .iter()
        .map(|a| api.sim.attachment(*a).unwrap().file_name)
        .collect();
    assert_eq!(names, ["ricevuta.eml", "daticert.xml"]);

    // The token is consumed.
    let reuse = api
        .put(&format!("/api/v2/tickets/{id}"))
        .json(&json!({"ticket": {"comment": {"body": "again", "uploads": [token]}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reuse.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // `tags` replaces the list; omitted `public` keeps the creation value (public).
    api.put(&format!("/api/v2/tickets/{id}"))
        .json(&json!({"ticket": {"tags": ["only"], "comment": {"body": "follow-up"}}}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let ticket = api.sim.ticket(id).unwrap();
    assert_eq!(ticket.tags, ["only"]);
    assert!(ticket.comments.last().unwrap().public);
    assert_eq!(
        ticket.comments.last().unwrap().html_body,
        "<p>follow-up</p>"
    );
}

#[tokio::test]
async fn attachment_content_urls_serve_the_uploaded_bytes() {
    let api = Api::start().await;
    let upload = api.upload("atto firmato.pdf", b"%PDF-1.4", None).await;
    let url = upload["upload"]["attachment"]["content_url"]
        .as_str()
        .unwrap();
    assert!(url.contains("name=atto%20firmato.pdf"), "{url}");
    let response = api.http.get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"%PDF-1.4");

    let missing_name = api.post("/api/v2/uploads").body("x").send().await.unwrap();
    assert_eq!(missing_name.status(), StatusCode::BAD_REQUEST);

    let token = upload["upload"]["token"].as_str().unwrap();
    let deleted = api
        .auth(
            api.http
                .delete(api.url(&format!("/api/v2/uploads/{token}"))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(api.sim.uploads().is_empty());
}

#[tokio::test]
async fn finds_tickets_by_external_id_which_is_not_unique() {
    let api = Api::start().await;
    api.create(&pec_ticket("pec:a")).await;
    api.create(&pec_ticket("pec:b")).await;
    api.create(&pec_ticket("pec:a")).await;
    let found: Value = api
        .get("/api/v2/tickets?external_id=pec:a")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(found["count"], 2);
    assert!(
        found["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["external_id"] == "pec:a")
    );
    let none: Value = api
        .get("/api/v2/tickets?external_id=zzz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["tickets"], json!([]));
}

#[tokio::test]
async fn comments_paginate_by_cursor_and_by_offset() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    for n in 1..=4 {
        api.put(&format!("/api/v2/tickets/{id}"))
            .json(&json!({"ticket": {"comment": {"body": format!("c{n}"), "public": false}}}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
    let bodies = |page: &Value| -> Vec<String> {
        page["comments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["body"].as_str().unwrap().to_string())
            .collect()
    };

    // Cursor, newest first.
    let page: Value = api
        .get(&format!(
            "/api/v2/tickets/{id}/comments?sort=-created_at&page[size]=2"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bodies(&page), ["c4", "c3"]);
    assert_eq!(page["meta"]["has_more"], true);
    let next = page["links"]["next"].as_str().unwrap();
    let page: Value = api
        .auth(api.http.get(next))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bodies(&page), ["c2", "c1"]);
    let after = page["meta"]["after_cursor"].as_str().unwrap();
    let last: Value = api
        .get(&format!(
            "/api/v2/tickets/{id}/comments?sort=-created_at&page[size]=2&page[after]={after}"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bodies(&last), ["Testo {{ticket.id}}"]);
    assert_eq!(last["meta"]["has_more"], false);
    assert!(last["links"]["next"].is_null());

    // Offset, oldest first by default.
    let page: Value = api
        .get(&format!("/api/v2/tickets/{id}/comments?per_page=3&page=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bodies(&page), ["c3", "c4"]);
    assert_eq!(page["count"], 5);
    assert!(page["next_page"].is_null());
    assert!(page["previous_page"].as_str().unwrap().contains("page=1"));
}

#[tokio::test]
async fn long_comment_bodies_are_truncated_at_64_kb_without_error() {
    let api = Api::start().await;
    let long = "a".repeat(COMMENT_BODY_LIMIT + 100);
    let body = json!({"ticket": {"requester": {"email": "a@b.it"}, "comment": {"body": long}}});
    let id = api.create(&body).await["ticket"]["id"].as_u64().unwrap();
    let comment = &api.sim.comments(id)[0];
    assert!(comment.truncated);
    assert_eq!(comment.body.len(), COMMENT_BODY_LIMIT);
}

#[tokio::test]
async fn injected_rate_limits_and_server_errors_come_first_then_service_resumes() {
    let api = Api::start().await;
    api.sim.rate_limit_next(1, 7);
    api.sim.fail_next(
        1,
        Fault::RateLimit {
            retry_after: None,
            reset: Some(3),
        },
    );
    api.sim.unavailable_next(1);

    let limited = api.get("/api/v2/tickets").send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "7");
    assert_eq!(limited.headers()["ratelimit-reset"], "7");

    let reset_only = api.get("/api/v2/tickets").send().await.unwrap();
    assert_eq!(reset_only.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(reset_only.headers().get("retry-after").is_none());
    assert_eq!(reset_only.headers()["ratelimit-reset"], "3");

    let unavailable = api.get("/api/v2/tickets").send().await.unwrap();
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);

    let ok = api.get("/api/v2/tickets").send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["x-rate-limit-remaining"], "699");
    assert_eq!(api.sim.requests().len(), 4);
}

#[tokio::test]
async fn the_opt_in_ticket_update_limit_answers_429_with_retry_after() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    api.sim
        .set_ticket_update_limit(Some((2, Duration::from_secs(600))));
    let update = || {
        api.put(&format!("/api/v2/tickets/{id}"))
            .json(&json!({"ticket": {"additional_tags": ["x"]}}))
            .send()
    };
    assert_eq!(update().await.unwrap().status(), StatusCode::OK);
    assert_eq!(update().await.unwrap().status(), StatusCode::OK);
    let limited = update().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((599..=600).contains(&wait), "{wait}");
    api.sim.set_ticket_update_limit(None);
    assert_eq!(update().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn the_account_request_limit_counts_each_window_and_answers_429_beyond_it() {
    let api = Api::start().await;
    let header = |r: &reqwest::Response, name: &str| -> u64 {
        r.headers()[name].to_str().unwrap().parse().unwrap()
    };
    // Without a limit every answer still carries the headers, with plenty left.
    let unlimited = api.get("/api/v2/users/me").send().await.unwrap();
    assert_eq!(header(&unlimited, "x-rate-limit"), 700);
    assert_eq!(header(&unlimited, "x-rate-limit-remaining"), 699);

    api.sim.set_request_limit(Some(RequestLimit {
        requests: 3,
        window: Duration::from_millis(1500),
    }));
    for left in [2, 1, 0] {
        let ok = api.get("/api/v2/users/me").send().await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(header(&ok, "x-rate-limit"), 3);
        assert_eq!(header(&ok, "x-rate-limit-remaining"), left);
    }
    // An injected fault answers before the limit and is not counted; nor is a refused request.
    api.sim.unavailable_next(1);
    let faulted = api.get("/api/v2/users/me").send().await.unwrap();
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    let unauthenticated = api.http.get(api.url("/api/v2/users/me")).send().await;
    assert_eq!(unauthenticated.unwrap().status(), StatusCode::UNAUTHORIZED);
    let limited = api.get("/api/v2/users/me").send().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "x-rate-limit-remaining"), 0);
    let wait = header(&limited, "retry-after");
    assert!(
        (1..=2).contains(&wait),
        "Retry-After {wait}: to the window's end"
    );
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "TooManyRequests");

    // The next window has the whole limit again.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let again = api.get("/api/v2/users/me").send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(header(&again, "x-rate-limit-remaining"), 2);

    let log = api.sim.requests();
    let counted: Vec<(Option<u64>, bool)> = log[1..]
        .iter()
        .map(|r| (r.rate_window, r.rate_limited))
        .collect();
    assert_eq!(
        counted,
        [
            (Some(0), false),
            (Some(0), false),
            (Some(0), false),
            (None, false),
            (None, false),
            (Some(0), true),
            (Some(1), false),
        ]
    );
    assert_eq!(log[0].rate_window, None, "no limit set then");

    // A ticket's own update limit is another 429: the account still has requests left.
    api.sim
        .set_request_limit(Some(RequestLimit::per_minute(200)));
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    api.sim
        .set_ticket_update_limit(Some((1, Duration::from_secs(600))));
    let update = || {
        api.put(&format!("/api/v2/tickets/{id}"))
            .json(&json!({"ticket": {"additional_tags": ["x"]}}))
            .send()
    };
    assert_eq!(update().await.unwrap().status(), StatusCode::OK);
    let per_ticket = update().await.unwrap();
    assert_eq!(per_ticket.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&per_ticket, "x-rate-limit"), 200);
    assert_eq!(header(&per_ticket, "x-rate-limit-remaining"), 197);
    api.sim.set_request_limit(None);
    let off = api.get("/api/v2/users/me").send().await.unwrap();
    assert_eq!(header(&off, "x-rate-limit-remaining"), 699);
}

#[tokio::test]
async fn latency_delays_every_request() {
    let api = Api::start().await;
    api.sim.set_latency(Duration::from_millis(200));
    let started = Instant::now();
    api.get("/api/v2/tickets").send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    api.sim.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn request_log_keeps_method_path_query_and_headers() {
    let api = Api::start().await;
    api.post("/api/v2/tickets")
        .header("Idempotency-Key", "k1")
        .json(&pec_ticket("pec:1"))
        .send()
        .await
        .unwrap();
    let log = api.sim.requests();
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, "/api/v2/tickets");
    assert_eq!(log[0].header("idempotency-key"), Some("k1"));
    assert!(
        log[0]
            .header("Authorization")
            .unwrap()
            .starts_with("Basic ")
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let url = format!("{}/api/v2/tickets", sim.base_url());
    sim.shutdown().await;
    let client = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert!(client.get(url).send().await.is_err());
}

#[tokio::test]
async fn users_show_the_api_agent_and_requesters_with_their_roles() {
    let api = Api::start().await;
    let agent_id = api.sim.agent_id();
    let agent: Value = api
        .get(&format!("/api/v2/users/{agent_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agent["user"]["id"], agent_id);
    assert_eq!(agent["user"]["email"], "api@pec-connector.test");
    assert_eq!(agent["user"]["role"], "agent");
    assert!(agent["user"]["name"].is_string());

    let ticket = api.create(&pec_ticket("pec:1")).await;
    let requester_id = ticket["ticket"]["requester_id"].as_u64().unwrap();
    let response = api
        .get(&format!("/api/v2/users/{requester_id}.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let requester: Value = response.json().await.unwrap();
    assert_eq!(requester["user"]["id"], requester_id);
    assert_eq!(requester["user"]["name"], "SdI");
    assert_eq!(requester["user"]["email"], "sdi03@pec.fatturapa.it");
    assert_eq!(requester["user"]["role"], "end-user");

    let missing = api.get("/api/v2/users/999999").send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        missing.json::<Value>().await.unwrap(),
        json!({"error": "RecordNotFound", "description": "Not found"})
    );
}

#[tokio::test]
async fn users_me_is_the_authenticated_api_agent_in_the_oas_shape() {
    let api = Api::start().await;
    let agent_id = api.sim.agent_id();
    let by_id: Value = api
        .get(&format!("/api/v2/users/{agent_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in ["/api/v2/users/me", "/api/v2/users/me.json"] {
        let response = api.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let me: Value = response.json().await.unwrap();
        let user = &me["user"];
        assert_eq!(user["id"], agent_id, "{path}");
        assert_eq!(user["email"], "api@pec-connector.test");
        assert_eq!(user["role"], "agent");
        assert_eq!(user["name"], by_id["user"]["name"]);
        assert_eq!(user["url"], by_id["user"]["url"]);
        assert_eq!(user["active"], true);
        assert!(user["authenticity_token"].is_string());
    }
    let oauth: Value = api
        .http
        .get(api.url("/api/v2/users/me"))
        .bearer_auth(&api.sim.credentials().oauth_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oauth["user"]["id"], agent_id);
    assert_eq!(oauth["user"]["role"], "agent");
}

#[tokio::test]
async fn users_me_reports_the_role_set_by_the_test() {
    let api = Api::start().await;
    api.sim.set_agent_role("end-user");
    let me: Value = api
        .get("/api/v2/users/me")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], api.sim.agent_id());
    assert_eq!(me["user"]["role"], "end-user");
    let agent = api
        .sim
        .users()
        .into_iter()
        .find(|u| u.id == api.sim.agent_id())
        .unwrap();
    assert_eq!(agent.role, "end-user");
}

#[tokio::test]
async fn account_settings_report_the_email_attachments_setting() {
    let api = Api::start().await;
    let settings = |api: &Api| {
        let request = api.get("/api/v2/account/settings");
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let on = settings(&api).await;
    assert_eq!(on["settings"]["tickets"]["email_attachments"], true);
    assert_eq!(on["settings"]["tickets"]["private_attachments"], false);
    assert_eq!(
        on["settings"]["tickets"]["comments_public_by_default"],
        true
    );
    api.sim.set_email_attachments(false);
    let off = settings(&api).await;
    assert_eq!(off["settings"]["tickets"]["email_attachments"], false);
}

#[tokio::test]
async fn users_and_settings_need_credentials() {
    let api = Api::start().await;
    let agent_id = api.sim.agent_id();
    for path in [
        format!("/api/v2/users/{agent_id}"),
        "/api/v2/users/me".to_string(),
        "/api/v2/users/me.json".to_string(),
        "/api/v2/account/settings".to_string(),
    ] {
        let response = api.http.get(api.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "Couldn't authenticate you"})
        );
        let wrong = api
            .http
            .get(api.url(&path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn agent_replies_carry_downloadable_attachments_under_the_configured_base() {
    let api = Api::start().await;
    let id = api.create(&pec_ticket("pec:1")).await["ticket"]["id"]
        .as_u64()
        .unwrap();
    let first = api.upload("risposta.pdf", b"%PDF-1.7 uno", None).await;
    let reply = api
        .put(&format!("/api/v2/tickets/{id}"))
        .json(&json!({"ticket": {"comment": {
            "html_body": "<p>In allegato la risposta.</p>",
            "public": true,
            "uploads": [first["upload"]["token"]],
        }}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);

    let comments: Value = api
        .get(&format!("/api/v2/tickets/{id}/comments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = &comments["comments"][1];
    assert_eq!(last["author_id"], api.sim.agent_id());
    assert_eq!(last["public"], true);
    assert_eq!(last["html_body"], "<p>In allegato la risposta.</p>");
    assert!(last["created_at"].is_string());
    let attachment = &last["attachments"][0];
    assert_eq!(attachment["file_name"], "risposta.pdf");
    assert_eq!(attachment["content_type"], "application/pdf");
    assert_eq!(attachment["size"], 12);
    let url = attachment["content_url"].as_str().unwrap();
    assert!(url.starts_with(api.sim.base_url()), "{url}");
    let content = api.http.get(url).send().await.unwrap();
    assert_eq!(content.status(), StatusCode::OK);
    assert_eq!(content.headers()["content-type"], "application/pdf");
    assert_eq!(content.bytes().await.unwrap().as_ref(), b"%PDF-1.7 uno");

    // With another base, new uploads point there; the old ones keep theirs.
    api.sim
        .set_attachment_base_url(Some("https://storage.example.test/".into()));
    let second = api.upload("altro.pdf", b"%PDF-1.7 due", None).await;
    let elsewhere = second["upload"]["attachment"]["content_url"]
        .as_str()
        .unwrap();
    assert!(
        elsewhere.starts_with("https://storage.example.test/attachments/token/"),
        "{elsewhere}"
    );
    assert!(elsewhere.ends_with("/?name=altro.pdf"), "{elsewhere}");
    let again: Value = api
        .get(&format!("/api/v2/tickets/{id}/comments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["comments"][1]["attachments"][0]["content_url"], url);
    api.sim.set_attachment_base_url(None);
    let third = api.upload("terzo.pdf", b"3", None).await;
    let back = third["upload"]["attachment"]["content_url"]
        .as_str()
        .unwrap();
    assert!(back.starts_with(api.sim.base_url()), "{back}");
}

// ----- webhooks, trigger categories and triggers ------------------------------------------------

impl Api {
    fn patch(&self, path: &str) -> RequestBuilder {
        self.auth(self.http.patch(self.url(path)))
    }

    fn delete(&self, path: &str) -> RequestBuilder {
        self.auth(self.http.delete(self.url(path)))
    }

    async fn send_json(&self, request: RequestBuilder, status: StatusCode) -> Value {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status);
        response.json().await.unwrap()
    }

    async fn create_webhook(&self, name: &str) -> String {
        let body = self
            .send_json(
                self.post("/api/v2/webhooks").json(&webhook(name)),
                StatusCode::CREATED,
            )
            .await;
        body["webhook"]["id"].as_str().unwrap().to_string()
    }

    async fn create_category(&self, name: &str) -> String {
        let body = self
            .send_json(
                self.post("/api/v2/trigger_categories")
                    .json(&json!({"trigger_category": {"name": name}})),
                StatusCode::OK,
            )
            .await;
        body["trigger_category"]["id"].as_str().unwrap().to_string()
    }
}

fn webhook(name: &str) -> Value {
    json!({"webhook": {
        "name": name,
        "endpoint": "https://pec-connector.example.it/zendesk/webhook",
        "http_method": "POST",
        "request_format": "json",
        "status": "active",
        "subscriptions": ["conditional_ticket_events"],
        "authentication": {"type": "bearer_token", "data": {"token": "tok-1"}, "add_position": "header"}
    }})
}

fn trigger(category_id: &str, webhook_id: &str) -> Value {
    json!({"trigger": {
        "title": "Reply by PEC Connector [a@pec.it]",
        "category_id": category_id,
        "conditions": {
            "all": [{"field": "comment_is_public", "operator": "is", "value": "true"}],
            "any": []
        },
        "actions": [
            {"field": "notification_webhook", "value": [webhook_id, "{\"ticket_id\":\"{{ticket.id}}\"}"]},
            {"field": "current_tags", "value": "pec_out_pending"}
        ]
    }})
}

#[tokio::test]
async fn webhooks_are_created_shown_replaced_and_deleted_without_showing_credentials() {
    let api = Api::start().await;
    let created = api
        .send_json(
            api.post("/api/v2/webhooks").json(&webhook("PEC Connector")),
            StatusCode::CREATED,
        )
        .await;
    let id = created["webhook"]["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26);
    assert_eq!(
        created["webhook"]["subscriptions"],
        json!(["conditional_ticket_events"])
    );
    assert_eq!(
        created["webhook"]["authentication"],
        json!({"type": "bearer_token", "add_position": "header"})
    );
    assert!(!created.to_string().contains("tok-1"));

    let shown = api
        .send_json(api.get(&format!("/api/v2/webhooks/{id}")), StatusCode::OK)
        .await;
    assert_eq!(shown["webhook"], created["webhook"]);
    assert!(!shown.to_string().contains("tok-1"));

    let secret = api
        .send_json(
            api.get(&format!("/api/v2/webhooks/{id}/signing_secret")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(secret["signing_secret"]["algorithm"], "SHA256");
    let secret = secret["signing_secret"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(secret.len() >= 40, "{secret}");
    assert_eq!(api.sim.webhook_signing_secret(&id), Some(secret));
    assert_eq!(api.sim.webhooks()[0].bearer_token(), Some("tok-1"));

    // PATCH keeps what is not sent; PUT replaces everything (no authentication: none).
    let patched = api
        .patch(&format!("/api/v2/webhooks/{id}"))
        .json(&json!({"webhook": {"status": "inactive"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::NO_CONTENT);
    assert_eq!(api.sim.webhooks()[0].status, "inactive");
    assert_eq!(api.sim.webhooks()[0].bearer_token(), Some("tok-1"));
    let mut replacement = webhook("Renamed");
    replacement["webhook"]
        .as_object_mut()
        .unwrap()
        .remove("authentication");
    let put = api
        .put(&format!("/api/v2/webhooks/{id}"))
        .json(&replacement)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::NO_CONTENT);
    let stored = &api.sim.webhooks()[0];
    assert_eq!(
        (stored.name.as_str(), stored.status.as_str()),
        ("Renamed", "active")
    );
    assert_eq!(stored.authentication, None);

    let deleted = api
        .delete(&format!("/api/v2/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert!(api.sim.webhooks().is_empty());
    for request in [
        api.get(&format!("/api/v2/webhooks/{id}")),
        api.get(&format!("/api/v2/webhooks/{id}/signing_secret")),
        api.delete(&format!("/api/v2/webhooks/{id}")),
        api.put(&format!("/api/v2/webhooks/{id}"))
            .json(&webhook("x")),
    ] {
        let body = api.send_json(request, StatusCode::NOT_FOUND).await;
        assert_eq!(body["error"], "RecordNotFound");
    }
}

#[tokio::test]
async fn webhooks_need_every_required_field_and_valid_authentication() {
    let api = Api::start().await;
    for field in [
        "name",
        "endpoint",
        "http_method",
        "request_format",
        "status",
        "subscriptions",
    ] {
        let mut body = webhook("PEC Connector");
        body["webhook"].as_object_mut().unwrap().remove(field);
        let answer = api
            .send_json(
                api.post("/api/v2/webhooks").json(&body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(answer["error"], "RecordInvalid");
        assert!(answer["details"][field].is_array(), "{field}: {answer}");
    }
    let mut bad_method = webhook("PEC Connector");
    bad_method["webhook"]["http_method"] = json!("TRACE");
    let mut no_token = webhook("PEC Connector");
    no_token["webhook"]["authentication"]["data"] = json!({});
    let mut mixed = webhook("PEC Connector");
    mixed["webhook"]["subscriptions"] =
        json!(["conditional_ticket_events", "zen:event-type:user.deleted"]);
    for (body, field) in [
        (bad_method, "http_method"),
        (no_token, "authentication"),
        (mixed, "subscriptions"),
    ] {
        let answer = api
            .send_json(
                api.post("/api/v2/webhooks").json(&body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert!(answer["details"][field].is_array(), "{field}: {answer}");
    }
    let unwrapped = api
        .post("/api/v2/webhooks")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unwrapped.status(), StatusCode::BAD_REQUEST);
    assert!(api.sim.webhooks().is_empty());
}

#[tokio::test]
async fn webhooks_list_by_name_in_cursor_pages() {
    let api = Api::start().await;
    for i in 0..5 {
        api.create_webhook(&format!("PEC Connector {i}")).await;
    }
    api.create_webhook("Other").await;
    let first = api
        .send_json(
            api.get("/api/v2/webhooks?filter[name_contains]=PEC&page[size]=2"),
            StatusCode::OK,
        )
        .await;
    assert_eq!(first["webhooks"].as_array().unwrap().len(), 2);
    assert_eq!(first["meta"]["has_more"], true);
    let next = first["links"]["next"].as_str().unwrap();
    assert!(next.contains("filter[name_contains]=PEC"), "{next}");
    let mut names = Vec::new();
    let mut url = Some(next.to_string());
    for item in first["webhooks"].as_array().unwrap() {
        names.push(item["name"].as_str().unwrap().to_string());
    }
    while let Some(next) = url.take() {
        let page: Value = api
            .auth(api.http.get(&next))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["webhooks"].as_array().unwrap() {
            names.push(item["name"].as_str().unwrap().to_string());
        }
        url = page["links"]["next"].as_str().map(str::to_string);
    }
    assert_eq!(names.len(), 5);
    assert!(names.iter().all(|n| n.starts_with("PEC Connector")));
    let bad_cursor = api
        .get("/api/v2/webhooks?page[after]=nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_cursor.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn trigger_categories_follow_the_oas_shapes() {
    let api = Api::start().await;
    let created = api
        .send_json(
            api.post("/api/v2/trigger_categories")
                .json(&json!({"trigger_category": {"name": "PEC Connector", "position": 3}})),
            StatusCode::OK,
        )
        .await;
    let id = created["trigger_category"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(created["trigger_category"]["position"], 3);
    let blank = api
        .send_json(
            api.post("/api/v2/trigger_categories")
                .json(&json!({"trigger_category": {"name": " "}})),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(blank["errors"][0]["code"], "InvalidTriggerCategory");

    let patched = api
        .send_json(
            api.patch(&format!("/api/v2/trigger_categories/{id}"))
                .json(&json!({"trigger_category": {"name": "Renamed"}})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(patched["trigger_category"]["name"], "Renamed");
    assert_eq!(patched["trigger_category"]["position"], 3);
    let shown = api
        .send_json(
            api.get(&format!("/api/v2/trigger_categories/{id}")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(shown, patched);
    let listed = api
        .send_json(api.get("/api/v2/trigger_categories"), StatusCode::OK)
        .await;
    assert_eq!(listed["trigger_categories"][0], patched["trigger_category"]);
    assert_eq!(listed["meta"]["has_more"], false);

    let webhook_id = api.create_webhook("PEC Connector").await;
    let trigger = api
        .send_json(
            api.post("/api/v2/triggers")
                .json(&trigger(&id, &webhook_id)),
            StatusCode::CREATED,
        )
        .await;
    let not_empty = api
        .send_json(
            api.delete(&format!("/api/v2/trigger_categories/{id}")),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert_eq!(not_empty["errors"][0]["code"], "TriggerCategoryNotEmpty");
    let trigger_id = trigger["trigger"]["id"].as_u64().unwrap();
    let gone = api
        .delete(&format!("/api/v2/triggers/{trigger_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    let deleted = api
        .delete(&format!("/api/v2/trigger_categories/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let missing = api
        .send_json(
            api.get(&format!("/api/v2/trigger_categories/{id}")),
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(missing["errors"][0]["code"], "TriggerCategoryNotFound");
}

#[tokio::test]
async fn triggers_are_validated_and_put_replaces_conditions_and_actions() {
    let api = Api::start().await;
    let category = api.create_category("PEC Connector").await;
    let webhook_id = api.create_webhook("PEC Connector").await;
    let created = api
        .send_json(
            api.post("/api/v2/triggers")
                .json(&trigger(&category, &webhook_id)),
            StatusCode::CREATED,
        )
        .await;
    let id = created["trigger"]["id"].as_u64().unwrap();
    assert_eq!(created["trigger"]["category_id"], json!(category));
    assert_eq!(created["trigger"]["active"], true);
    assert_eq!(
        created["trigger"]["actions"][0]["value"][0],
        json!(webhook_id)
    );

    let cases = [
        (
            json!({"trigger": {"title": "", "conditions": {"all": []}, "actions": [{"field": "status", "value": "open"}]}}),
            "title",
        ),
        (
            json!({"trigger": {"title": "t", "conditions": {"all": []}, "actions": []}}),
            "actions",
        ),
        (
            json!({"trigger": {"title": "t", "conditions": {"all": [{"value": 1}]}, "actions": [{"field": "status", "value": "open"}]}}),
            "conditions",
        ),
        (
            json!({"trigger": {"title": "t", "conditions": {"all": "x"}, "actions": [{"field": "status", "value": "open"}]}}),
            "conditions",
        ),
        (
            json!({"trigger": {"title": "t", "actions": [{"field": "status", "value": "open"}]}}),
            "conditions",
        ),
        (
            json!({"trigger": {"title": "t", "conditions": {}, "actions": [{"field": "notification_webhook", "value": ["01HNOPE", "{}"]}]}}),
            "actions",
        ),
        (
            json!({"trigger": {"title": "t", "conditions": {}, "actions": [{"field": "notification_webhook", "value": format!("[\"{webhook_id}\", \"{{}}\"]")}]}}),
            "actions",
        ),
        (
            json!({"trigger": {"title": "t", "category_id": "424242", "conditions": {}, "actions": [{"field": "status", "value": "open"}]}}),
            "category_id",
        ),
    ];
    for (body, field) in cases {
        let answer = api
            .send_json(
                api.post("/api/v2/triggers").json(&body),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        assert_eq!(answer["error"], "RecordInvalid");
        assert!(answer["details"][field].is_array(), "{field}: {answer}");
    }
    assert_eq!(api.sim.triggers().len(), 1);

    // Sending only conditions clears the actions too: refused, nothing changes.
    let only_conditions = api
        .put(&format!("/api/v2/triggers/{id}"))
        .json(&json!({"trigger": {"conditions": {"all": []}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(only_conditions.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(api.sim.trigger(id).unwrap().actions.len(), 2);

    let updated = api
        .send_json(
            api.put(&format!("/api/v2/triggers/{id}"))
                .json(&json!({"trigger": {
                    "title": "Renamed",
                    "conditions": {"any": [{"field": "status", "operator": "is", "value": "open"}]},
                    "actions": [{"field": "status", "value": "pending"}]
                }})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(updated["trigger"]["title"], "Renamed");
    assert_eq!(updated["trigger"]["conditions"]["all"], json!([]));
    assert_eq!(updated["trigger"]["conditions"]["any"][0]["value"], "open");
    assert_eq!(updated["trigger"]["actions"].as_array().unwrap().len(), 1);
    assert_eq!(updated["trigger"]["category_id"], json!(category));

    let shown = api
        .send_json(api.get(&format!("/api/v2/triggers/{id}")), StatusCode::OK)
        .await;
    assert_eq!(shown, updated);
    let by_category = api
        .send_json(
            api.get(&format!("/api/v2/triggers?category_id={category}")),
            StatusCode::OK,
        )
        .await;
    assert_eq!(by_category["count"], 1);
    let other = api
        .send_json(api.get("/api/v2/triggers?category_id=1"), StatusCode::OK)
        .await;
    assert_eq!(other["count"], 0);

    // Triggers no longer call the webhook: it can now be deleted.
    let deleted = api
        .delete(&format!("/api/v2/webhooks/{webhook_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    for request in [
        api.get("/api/v2/triggers/999999"),
        api.put("/api/v2/triggers/999999")
            .json(&trigger(&category, &webhook_id)),
        api.delete("/api/v2/triggers/999999"),
    ] {
        let body = api.send_json(request, StatusCode::NOT_FOUND).await;
        assert_eq!(body["error"], "RecordNotFound");
    }
}

#[tokio::test]
async fn webhooks_in_use_by_a_trigger_cannot_be_deleted_and_admins_can_edit_triggers() {
    let api = Api::start().await;
    let category = api.create_category("PEC Connector").await;
    let webhook_id = api.create_webhook("PEC Connector").await;
    let created = api
        .send_json(
            api.post("/api/v2/triggers")
                .json(&trigger(&category, &webhook_id)),
            StatusCode::CREATED,
        )
        .await;
    let id = created["trigger"]["id"].as_u64().unwrap();
    let in_use = api
        .send_json(
            api.delete(&format!("/api/v2/webhooks/{webhook_id}")),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    assert_eq!(in_use["details"]["base"][0]["error"], "WebhookInUse");
    assert_eq!(api.sim.webhooks().len(), 1);

    assert!(api.sim.edit_trigger(id, |t| {
        t.actions
            .push(json!({"field": "priority", "value": "high"}))
    }));
    assert!(!api.sim.edit_trigger(id + 1000, |_| {}));
    let shown = api
        .send_json(api.get(&format!("/api/v2/triggers/{id}")), StatusCode::OK)
        .await;
    assert_eq!(
        shown["trigger"]["actions"][2],
        json!({"field": "priority", "value": "high"})
    );
}

#[tokio::test]
async fn webhook_and_trigger_routes_need_credentials() {
    let api = Api::start().await;
    for path in [
        "/api/v2/webhooks",
        "/api/v2/webhooks/01H00000000000ABCDEFGHJKMN",
        "/api/v2/webhooks/01H00000000000ABCDEFGHJKMN/signing_secret",
        "/api/v2/trigger_categories",
        "/api/v2/trigger_categories/1",
        "/api/v2/triggers",
        "/api/v2/triggers/1",
    ] {
        let response = api.http.get(api.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({"error": "Couldn't authenticate you"})
        );
    }
    let post = api
        .http
        .post(api.url("/api/v2/webhooks"))
        .json(&webhook("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::UNAUTHORIZED);
    assert!(api.sim.webhooks().is_empty());
}
