//! `ZendeskClient` against the loopback Zendesk simulator.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sandbox::ZendeskSimulator;
use sandbox::zendesk::{Fault, RequestLimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zendesk::{
    Auth, Comment, Condition, Conditions, CustomField, NewTicket, Requester, RetryPolicy,
    TicketFieldSpec, TicketId, TicketUpdate, TriggerAction, TriggerSpec, WebhookSpec,
    ZendeskClient, ZendeskConfig, ZendeskError, text_to_html,
};

fn config(sim: &ZendeskSimulator) -> ZendeskConfig {
    let creds = sim.credentials();
    ZendeskConfig {
        base_url: sim.base_url().to_string(),
        auth: Auth::Basic {
            email: creds.agent_email.clone(),
            api_token: creds.api_token.clone().into(),
        },
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            max_attempts: 50,
        },
    }
}

fn client(sim: &ZendeskSimulator) -> ZendeskClient {
    ZendeskClient::new(config(sim)).expect("client builds")
}

fn in_secs(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

fn new_ticket(external_id: &str) -> NewTicket {
    NewTicket {
        subject: "Invio File 7339338".into(),
        requester: Requester {
            email: "sdi03@pec.fatturapa.it".into(),
            name: Some("SdI".into()),
        },
        comment: Comment {
            html_body: "<p>Testo del messaggio PEC</p>".into(),
            public: true,
            uploads: vec![],
            author_id: None,
        },
        external_id: Some(external_id.into()),
        tags: vec!["pec".into(), "pec_inbound".into()],
        custom_fields: vec![CustomField {
            id: 360001234567,
            value: "opec288".into(),
        }],
    }
}

#[tokio::test]
async fn create_with_the_same_idempotency_key_twice_makes_one_ticket() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    // The custom field must exist: Zendesk drops values of fields it does not have.
    let field = zd
        .create_ticket_field(
            &TicketFieldSpec {
                kind: "text".into(),
                title: "PEC identificativo".into(),
                agent_description: None,
                visible_in_portal: false,
                editable_in_portal: false,
                active: true,
            },
            in_secs(5),
        )
        .await
        .unwrap();
    let mut ticket = new_ticket("pec:opec288@pcert.sogei.it");
    ticket.custom_fields[0].id = field.id;
    let first = zd
        .create_ticket(&ticket, "pec-in:opec288", in_secs(5))
        .await
        .unwrap();
    let second = zd
        .create_ticket(&ticket, "pec-in:opec288", in_secs(5))
        .await
        .unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(sim.tickets().len(), 1);
    assert_eq!(first.tags, ["pec", "pec_inbound"]);
    assert_eq!(
        first.external_id.as_deref(),
        Some("pec:opec288@pcert.sogei.it")
    );
    assert_eq!(first.custom_fields[0].value, "opec288");
    let creates: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v2/tickets")
        .collect();
    assert_eq!(creates.len(), 2);
    assert!(
        creates
            .iter()
            .all(|r| r.header("idempotency-key") == Some("pec-in:opec288"))
    );

    // Same key, different ticket: a permanent, typed rejection.
    let other = zd
        .create_ticket(&new_ticket("pec:other"), "pec-in:opec288", in_secs(5))
        .await;
    match other {
        Err(e @ ZendeskError::Invalid { status: 400, .. }) => assert!(e.is_permanent()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rate_limited_twice_then_served_after_waiting_retry_after() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    sim.rate_limit_next(2, 1);
    let started = Instant::now();
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k-429", in_secs(10))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    let log = sim.requests();
    assert_eq!(log.len(), 3);
    for pair in log.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at) >= Duration::from_secs(1));
    }
    assert_eq!(
        sim.ticket(ticket.id.0).unwrap().subject,
        "Invio File 7339338"
    );
}

#[tokio::test]
async fn the_budget_follows_the_rate_limit_headers_and_is_shared_by_clones() {
    let sim = ZendeskSimulator::start().await.unwrap();
    sim.set_request_limit(Some(RequestLimit {
        requests: 4,
        window: Duration::from_secs(60),
    }));
    let zd = client(&sim);
    assert_eq!(zd.budget().left(), None, "nothing known before an answer");
    let other = client(&sim).with_budget(zd.budget().clone());
    zd.current_user(in_secs(5)).await.unwrap();
    other.current_user(in_secs(5)).await.unwrap();
    let left = zd.budget().left().unwrap();
    assert_eq!((left.limit, left.remaining), (4, 2));
    assert!(zd.budget().allows(2, 0) && !zd.budget().allows(2, 25));

    // The limit's 429 (Retry-After 60 beyond the deadline) leaves nothing in the budget.
    zd.current_user(in_secs(5)).await.unwrap();
    zd.current_user(in_secs(5)).await.unwrap();
    let error = other.current_user(in_secs(5)).await.unwrap_err();
    assert!(
        matches!(error, ZendeskError::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert_eq!(zd.budget().left().unwrap().remaining, 0);
    assert!(!zd.budget().allows(1, 0));
    // A client of its own knows nothing of it.
    assert_eq!(client(&sim).budget().left(), None);
}

#[tokio::test]
async fn rate_limit_reset_header_alone_is_honoured() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    sim.fail_next(
        1,
        Fault::RateLimit {
            retry_after: None,
            reset: Some(1),
        },
    );
    let started = Instant::now();
    zd.find_by_external_id("x", in_secs(5)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_retry_after_beyond_the_deadline_fails_at_once() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    sim.rate_limit_next(1, 60);
    let started = Instant::now();
    let error = zd.get_ticket(TicketId(1), in_secs(5)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(error, ZendeskError::DeadlineExceeded { attempts: 1, .. }),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(60)));
}

#[tokio::test]
async fn unavailable_until_the_deadline_ends_in_deadline_exceeded_on_time() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    sim.fail_next(10_000, Fault::Status(503));
    let started = Instant::now();
    let deadline = started + Duration::from_millis(1500);
    let error = zd
        .create_ticket(&new_ticket("pec:1"), "k-503", deadline)
        .await
        .unwrap_err();
    let finished = Instant::now();
    match &error {
        ZendeskError::DeadlineExceeded { attempts, last, .. } => {
            assert!(*attempts >= 3, "only {attempts} attempts");
            assert!(matches!(
                last.as_deref(),
                Some(ZendeskError::Server { status: 503, .. })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        finished <= deadline + Duration::from_millis(200),
        "overshot by {:?}",
        finished - deadline
    );
    assert!(sim.tickets().is_empty());
}

#[tokio::test]
async fn a_deadline_already_past_sends_nothing() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let error = zd
        .get_ticket(TicketId(1), Instant::now())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ZendeskError::DeadlineExceeded {
                attempts: 0,
                last: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn slow_reads_time_out_and_are_retried_until_the_deadline() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = ZendeskClient::new(ZendeskConfig {
        timeout: Duration::from_millis(200),
        ..config(&sim)
    })
    .unwrap();
    sim.set_latency(Duration::from_millis(600));
    let deadline = Instant::now() + Duration::from_millis(1000);
    let error = zd.find_by_external_id("x", deadline).await.unwrap_err();
    assert!(Instant::now() <= deadline + Duration::from_millis(200));
    match &error {
        ZendeskError::DeadlineExceeded { attempts, last, .. } => {
            assert!(*attempts >= 2);
            assert!(matches!(
                last.as_deref(),
                Some(ZendeskError::Timeout { .. })
            ));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_comment_that_timed_out_is_not_sent_again() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = ZendeskClient::new(ZendeskConfig {
        timeout: Duration::from_millis(200),
        ..config(&sim)
    })
    .unwrap();
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    sim.set_latency(Duration::from_millis(500));
    let error = zd
        .add_comment(
            ticket.id,
            &Comment::internal_note("<p>nota</p>"),
            in_secs(5),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, ZendeskError::Timeout { .. }), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(
        sim.requests().iter().filter(|r| r.method == "PUT").count(),
        1
    );
    // The simulator still applies it: exactly why the client must not repeat it.
    let until = in_secs(5);
    while sim.comments(ticket.id.0).len() < 2 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.comments(ticket.id.0).len(), 2);
    assert_eq!(
        sim.requests().iter().filter(|r| r.method == "PUT").count(),
        1
    );
}

#[tokio::test]
async fn comments_are_retried_on_503_and_429() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    sim.unavailable_next(1);
    sim.rate_limit_next(1, 0);
    zd.add_comment(
        ticket.id,
        &Comment::internal_note("<p>nota</p>"),
        in_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(sim.comments(ticket.id.0).len(), 2);
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized_and_not_retried() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = ZendeskClient::new(ZendeskConfig {
        auth: Auth::Basic {
            email: sim.credentials().agent_email.clone(),
            api_token: "wrong-token-value".to_string().into(),
        },
        ..config(&sim)
    })
    .unwrap();
    let error = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ZendeskError::Unauthorized { .. }),
        "{error:?}"
    );
    assert!(error.is_permanent());
    assert!(!format!("{error} {error:?}").contains("wrong-token-value"));
    assert_eq!(sim.requests().len(), 1);
}

#[tokio::test]
async fn oauth_bearer_tokens_work() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = ZendeskClient::new(ZendeskConfig {
        auth: Auth::Bearer {
            token: sim.credentials().oauth_token.clone().into(),
        },
        ..config(&sim)
    })
    .unwrap();
    assert!(
        zd.find_by_external_id("nothing", in_secs(5))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn uploads_chain_on_one_token_and_attach_to_an_internal_note() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();

    let token = zd
        .upload(
            "ricevuta.eml",
            "message/rfc822",
            b"From: posta-certificata@pec.it\r\n\r\nx".to_vec(),
            None,
            in_secs(5),
        )
        .await
        .unwrap();
    let same = zd
        .upload(
            "daticert.xml",
            "application/xml",
            &b"<postacert/>"[..],
            Some(&token),
            in_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(same, token);

    let note = Comment {
        uploads: vec![token],
        ..Comment::internal_note("<p><b>Ricevuta di avvenuta consegna</b></p>")
    };
    let update = TicketUpdate {
        comment: Some(note),
        additional_tags: vec!["pec_delivered".into()],
        remove_tags: vec!["pec_inbound".into()],
        status: None,
    };
    let updated = zd
        .update_ticket(ticket.id, &update, in_secs(5))
        .await
        .unwrap();
    assert_eq!(updated.tags, ["pec", "pec_delivered"]);

    let stored = sim.comments(ticket.id.0);
    let stored_note = stored.last().unwrap();
    assert!(!stored_note.public);
    assert_eq!(stored_note.author_id, sim.agent_id());
    let files: Vec<(String, String)> = stored_note
        .attachment_ids
        .iter()
        .map(|id| sim.attachment(*id).unwrap())
        .map(|a| (a.file_name, a.content_type))
        .collect();
    assert_eq!(
        files,
        [
            ("ricevuta.eml".to_string(), "message/rfc822".to_string()),
            ("daticert.xml".to_string(), "application/xml".to_string())
        ]
    );

    // And through the API: newest first, with downloadable attachments.
    let latest = zd.latest_comments(ticket.id, 1, in_secs(5)).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].attachments.len(), 2);
    let content = reqwest_get(&latest[0].attachments[1].content_url).await;
    assert_eq!(content, b"<postacert/>");
}

async fn reqwest_get(url: &str) -> Vec<u8> {
    // Content URLs are fetched without Zendesk credentials (reference §3).
    let response = reqwest::get(url).await.unwrap().error_for_status().unwrap();
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn add_tags_keeps_the_existing_ones() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    let updated = zd
        .add_tags(ticket.id, &["pec_out_pending"], in_secs(5))
        .await
        .unwrap();
    assert_eq!(updated.tags, ["pec", "pec_inbound", "pec_out_pending"]);
    assert_eq!(sim.comments(ticket.id.0).len(), 1);
}

#[tokio::test]
async fn finds_the_oldest_ticket_by_external_id() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    assert!(
        zd.find_by_external_id("pec:a b&c", in_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    let first = zd
        .create_ticket(&new_ticket("pec:a b&c"), "k1", in_secs(5))
        .await
        .unwrap();
    zd.create_ticket(&new_ticket("pec:other"), "k2", in_secs(5))
        .await
        .unwrap();
    zd.create_ticket(&new_ticket("pec:a b&c"), "k3", in_secs(5))
        .await
        .unwrap();
    let found = zd
        .find_by_external_id("pec:a b&c", in_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.id);
    assert_eq!(
        zd.tickets_by_external_id("pec:a b&c", in_secs(5))
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn reads_tickets_and_reports_missing_ones() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    let read = zd.get_ticket(ticket.id, in_secs(5)).await.unwrap();
    assert_eq!(read.subject.as_deref(), Some("Invio File 7339338"));
    assert_eq!(read.status.as_deref(), Some("new"));
    let error = zd
        .get_ticket(TicketId(424242), in_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, ZendeskError::NotFound { .. }), "{error:?}");
    assert!(error.is_permanent());
}

#[tokio::test]
async fn latest_comments_follow_cursor_pages() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    for n in 1..=104 {
        zd.add_comment(
            ticket.id,
            &Comment::internal_note(format!("<p>n{n}</p>")),
            in_secs(5),
        )
        .await
        .unwrap();
    }
    let latest = zd
        .latest_comments(ticket.id, 103, in_secs(10))
        .await
        .unwrap();
    assert_eq!(latest.len(), 103);
    assert_eq!(latest[0].html_body, "<p>n104</p>");
    assert_eq!(latest[102].html_body, "<p>n2</p>");
    let all = zd
        .latest_comments(ticket.id, 500, in_secs(10))
        .await
        .unwrap();
    assert_eq!(all.len(), 105);
    let pages = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/comments"))
        .count();
    assert_eq!(pages, 4);
}

#[tokio::test]
async fn validation_errors_carry_the_field_details() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let mut ticket = new_ticket("pec:1");
    ticket.requester.email = "not an address".into();
    match zd.create_ticket(&ticket, "k", in_secs(5)).await {
        Err(ZendeskError::Invalid {
            status: 422,
            error,
            details,
            ..
        }) => {
            assert_eq!(error, "RecordInvalid");
            assert_eq!(details[0].field, "requester");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn comments_over_64_kb_are_refused_before_sending() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let mut ticket = new_ticket("pec:1");
    ticket.comment.html_body = "x".repeat(zendesk::COMMENT_BODY_LIMIT + 1);
    let error = zd
        .create_ticket(&ticket, "k", in_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ZendeskError::CommentTooLarge { .. }),
        "{error:?}"
    );
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn escaped_pec_text_survives_placeholder_rendering_in_agent_notes() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    let pec_text = "Oggetto: {{ticket.id}} e {{sconosciuto}}";

    zd.add_comment(
        ticket.id,
        &Comment::internal_note(format!("<p>{pec_text}</p>")),
        in_secs(5),
    )
    .await
    .unwrap();
    zd.add_comment(
        ticket.id,
        &Comment::internal_note(text_to_html(pec_text)),
        in_secs(5),
    )
    .await
    .unwrap();

    let comments = sim.comments(ticket.id.0);
    // Unescaped: Zendesk rendered one placeholder and stripped the other.
    assert_eq!(
        comments[1].html_body,
        format!("<p>Oggetto: {} e </p>", ticket.id)
    );
    // Escaped: the reader sees the original text (the zero-width space is invisible).
    let shown = comments[2].html_body.replace("&#8203;", "");
    assert_eq!(shown, pec_text);
}

// ----- users, account settings, attachment downloads --------------------------------------------

#[tokio::test]
async fn reads_the_api_agent_and_end_users_and_reports_missing_ones() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let agent = zd.get_user(sim.agent_id(), in_secs(5)).await.unwrap();
    assert_eq!(agent.id, sim.agent_id());
    assert_eq!(agent.email.as_deref(), Some("api@pec-connector.test"));
    assert_eq!(agent.role.as_deref(), Some("agent"));

    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    let requester_id = ticket.requester_id.unwrap();
    assert_ne!(requester_id, sim.agent_id());
    let requester = zd.get_user(requester_id, in_secs(5)).await.unwrap();
    assert_eq!(requester.id, requester_id);
    assert_eq!(requester.name, "SdI");
    assert_eq!(requester.email.as_deref(), Some("sdi03@pec.fatturapa.it"));
    assert_eq!(requester.role.as_deref(), Some("end-user"));

    let error = zd.get_user(424242, in_secs(5)).await.unwrap_err();
    match &error {
        ZendeskError::NotFound { op } => assert_eq!(op, "GET /api/v2/users/424242"),
        other => panic!("{other:?}"),
    }
    assert!(error.is_permanent());
}

#[tokio::test]
async fn current_user_is_the_api_agent_with_the_api_token_and_with_oauth() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let by_token = client(&sim).current_user(in_secs(5)).await.unwrap();
    assert_eq!(by_token.id, sim.agent_id());
    assert_eq!(by_token.email.as_deref(), Some("api@pec-connector.test"));
    assert_eq!(by_token.role.as_deref(), Some("agent"));
    assert!(!by_token.name.is_empty());

    let oauth = ZendeskClient::new(ZendeskConfig {
        auth: Auth::Bearer {
            token: sim.credentials().oauth_token.clone().into(),
        },
        ..config(&sim)
    })
    .unwrap();
    let by_oauth = oauth.current_user(in_secs(5)).await.unwrap();
    assert_eq!(by_oauth, by_token);

    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert!(
        log.iter()
            .all(|r| r.method == "GET" && r.path == "/api/v2/users/me")
    );
    assert!(
        log[0]
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v.starts_with("Basic "))
    );
    assert!(
        log[1]
            .headers
            .iter()
            .any(|(n, v)| n == "authorization" && v.starts_with("Bearer "))
    );
}

#[tokio::test]
async fn current_user_with_wrong_credentials_is_unauthorized_and_not_retried() {
    let sim = ZendeskSimulator::start().await.unwrap();
    for auth in [
        Auth::Basic {
            email: sim.credentials().agent_email.clone(),
            api_token: "wrong-token-value".to_string().into(),
        },
        Auth::Bearer {
            token: "wrong-token-value".to_string().into(),
        },
    ] {
        let zd = ZendeskClient::new(ZendeskConfig {
            auth,
            ..config(&sim)
        })
        .unwrap();
        let error = zd.current_user(in_secs(5)).await.unwrap_err();
        match &error {
            ZendeskError::Unauthorized { op } => assert_eq!(op, "GET /api/v2/users/me"),
            other => panic!("{other:?}"),
        }
        assert!(error.is_permanent());
        assert!(!format!("{error} {error:?}").contains("wrong-token-value"));
    }
    assert_eq!(sim.requests().len(), 2);
}

#[tokio::test]
async fn current_user_shows_a_role_change_of_the_api_user() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    assert_eq!(
        zd.current_user(in_secs(5)).await.unwrap().role.as_deref(),
        Some("agent")
    );
    sim.set_agent_role("end-user");
    let user = zd.current_user(in_secs(5)).await.unwrap();
    assert_eq!(user.id, sim.agent_id());
    assert_eq!(user.role.as_deref(), Some("end-user"));
    assert_eq!(
        zd.get_user(sim.agent_id(), in_secs(5))
            .await
            .unwrap()
            .role
            .as_deref(),
        Some("end-user")
    );
    sim.set_agent_role("admin");
    assert_eq!(
        zd.current_user(in_secs(5)).await.unwrap().role.as_deref(),
        Some("admin")
    );
}

#[tokio::test]
async fn current_user_is_retried_on_503_and_429() {
    let sim = ZendeskSimulator::start().await.unwrap();
    sim.unavailable_next(1);
    sim.fail_next(
        1,
        Fault::RateLimit {
            retry_after: Some(0),
            reset: None,
        },
    );
    let user = client(&sim).current_user(in_secs(5)).await.unwrap();
    assert_eq!(user.id, sim.agent_id());
    assert_eq!(sim.requests().len(), 3);
}

#[tokio::test]
async fn reads_the_include_attachments_in_emails_setting() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    assert!(zd.email_attachments_enabled(in_secs(5)).await.unwrap());
    sim.set_email_attachments(false);
    assert!(!zd.email_attachments_enabled(in_secs(5)).await.unwrap());
    sim.set_email_attachments(true);
    assert!(zd.email_attachments_enabled(in_secs(5)).await.unwrap());
    let log = sim.requests();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r.path == "/api/v2/account/settings"));
}

/// A ticket with a public agent reply carrying one file; returns the file's `content_url`.
async fn agent_reply_with_file(sim: &ZendeskSimulator, zd: &ZendeskClient, data: &[u8]) -> String {
    let ticket = zd
        .create_ticket(&new_ticket("pec:1"), "k", in_secs(5))
        .await
        .unwrap();
    let token = zd
        .upload(
            "risposta firmata.pdf",
            "application/pdf",
            data.to_vec(),
            None,
            in_secs(5),
        )
        .await
        .unwrap();
    let reply = Comment {
        html_body: "<p>Gentile cliente, in allegato la risposta.</p>".into(),
        public: true,
        uploads: vec![token],
        author_id: None,
    };
    zd.add_comment(ticket.id, &reply, in_secs(5)).await.unwrap();
    let latest = zd.latest_comments(ticket.id, 1, in_secs(5)).await.unwrap();
    let comment = &latest[0];
    assert!(comment.public);
    assert_eq!(comment.author_id, Some(sim.agent_id()));
    assert_eq!(comment.attachments.len(), 1);
    let attachment = &comment.attachments[0];
    assert_eq!(attachment.file_name, "risposta firmata.pdf");
    assert_eq!(attachment.content_type, "application/pdf");
    assert_eq!(attachment.size, data.len() as u64);
    attachment.content_url.clone()
}

#[tokio::test]
async fn downloads_the_file_of_an_agent_reply_with_credentials() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let url = agent_reply_with_file(&sim, &zd, &data).await;
    assert!(url.starts_with(sim.base_url()), "{url}");

    let downloaded = zd
        .download_attachment(&url, 10_000, in_secs(5))
        .await
        .unwrap();
    assert_eq!(downloaded, data);
    let log = sim.requests();
    let fetch = log.last().unwrap();
    assert!(fetch.path.starts_with("/attachments/token/"), "{fetch:?}");
    assert!(fetch.header("authorization").is_some());
}

#[tokio::test]
async fn attachment_downloads_are_retried_on_server_errors() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let url = agent_reply_with_file(&sim, &zd, b"%PDF-1.7").await;
    sim.unavailable_next(2);
    let downloaded = zd.download_attachment(&url, 100, in_secs(5)).await.unwrap();
    assert_eq!(downloaded, b"%PDF-1.7");
    let fetches = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/attachments/"))
        .count();
    assert_eq!(fetches, 3);
}

#[tokio::test]
async fn attachments_on_another_host_are_refused_without_contacting_it() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let elsewhere = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let elsewhere_addr = elsewhere.local_addr().unwrap();
    sim.set_attachment_base_url(Some(format!("http://{elsewhere_addr}")));
    let url = agent_reply_with_file(&sim, &zd, b"%PDF-1.7").await;
    assert!(url.starts_with(&format!("http://{elsewhere_addr}/attachments/token/")));
    let before = sim.requests().len();

    let error = zd
        .download_attachment(&url, 1_000_000, in_secs(5))
        .await
        .unwrap_err();
    match &error {
        ZendeskError::ForeignHost { url_host } => {
            assert_eq!(url_host, &elsewhere_addr.to_string())
        }
        other => panic!("{other:?}"),
    }
    assert!(error.is_permanent());
    let contacted = tokio::time::timeout(Duration::from_millis(300), elsewhere.accept()).await;
    assert!(contacted.is_err(), "the other host was contacted");
    assert_eq!(sim.requests().len(), before);

    // Same host, other scheme: also another origin.
    let https = url.replacen("http://", "https://", 1);
    assert!(matches!(
        zd.download_attachment(&https, 1_000_000, in_secs(5)).await,
        Err(ZendeskError::ForeignHost { .. })
    ));
    assert!(matches!(
        zd.download_attachment("not a url", 1_000_000, in_secs(5))
            .await,
        Err(ZendeskError::AttachmentUrl { .. })
    ));
}

#[tokio::test]
async fn attachments_above_the_limit_fail_before_their_body_is_read() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let data = vec![b'x'; 4096];
    let url = agent_reply_with_file(&sim, &zd, &data).await;
    let error = zd
        .download_attachment(&url, 4095, in_secs(5))
        .await
        .unwrap_err();
    match error {
        ZendeskError::AttachmentTooLarge { size, limit } => assert_eq!((size, limit), (4096, 4095)),
        other => panic!("{other:?}"),
    }
    let fetches = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/attachments/"))
        .count();
    assert_eq!(fetches, 1, "a too large attachment is not retried");
    // Exactly at the limit is fine.
    let downloaded = zd
        .download_attachment(&url, 4096, in_secs(5))
        .await
        .unwrap();
    assert_eq!(downloaded.len(), 4096);
}

#[tokio::test]
async fn unknown_attachment_tokens_are_not_found() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let url = format!("{}/attachments/token/nope/?name=x.pdf", sim.base_url());
    let error = zd
        .download_attachment(&url, 1000, in_secs(5))
        .await
        .unwrap_err();
    match &error {
        // The op names the file, never the URL's token.
        ZendeskError::NotFound { op } => assert_eq!(op, "GET attachment \"x.pdf\""),
        other => panic!("{other:?}"),
    }
    assert!(error.is_permanent());
}

// A scripted HTTP/1.1 server, for answers the simulator does not give (redirects, chunked bodies).

type Log = Arc<Mutex<Vec<String>>>;

/// Serves `routes` (request target → raw response) on `listener`, one request per connection,
/// and logs each request head; unknown targets get `404`.
fn scripted(listener: TcpListener, routes: Vec<(String, Vec<u8>)>) -> Log {
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split(' ').nth(1).unwrap_or_default().to_string();
            seen.lock().unwrap().push(head);
            let response = routes
                .iter()
                .find(|(t, _)| *t == target)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| {
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        .to_vec()
                });
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        }
    });
    log
}

fn redirect_to(location: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
    .into_bytes()
}

fn raw_client(addr: std::net::SocketAddr) -> ZendeskClient {
    ZendeskClient::new(ZendeskConfig {
        base_url: format!("http://{addr}"),
        auth: Auth::Basic {
            email: "api@pec-connector.test".into(),
            api_token: "sandbox-api-token".to_string().into(),
        },
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(400),
            max_attempts: 3,
        },
    })
    .unwrap()
}

fn authorized(head: &str) -> bool {
    head.to_ascii_lowercase().contains("\r\nauthorization:")
}

#[tokio::test]
async fn redirects_are_followed_without_ever_taking_credentials_off_the_account() {
    let zendesk = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let storage = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let (z, s) = (zendesk.local_addr().unwrap(), storage.local_addr().unwrap());
    // zendesk → storage → storage (same host: reqwest's own policy would put the credentials
    // back here) → zendesk again → the content.
    let zendesk_log = scripted(
        zendesk,
        vec![
            (
                "/attachments/token/t1/?name=a.pdf".into(),
                redirect_to(&format!("http://{s}/signed/1")),
            ),
            (
                "/back".into(),
                b"HTTP/1.1 200 OK\r\ncontent-type: application/pdf\r\ncontent-length: 8\r\nconnection: close\r\n\r\n%PDF-1.7".to_vec(),
            ),
        ],
    );
    let storage_log = scripted(
        storage,
        vec![
            ("/signed/1".into(), redirect_to("/signed/2")),
            ("/signed/2".into(), redirect_to(&format!("http://{z}/back"))),
        ],
    );
    let zd = raw_client(z);
    let url = format!("http://{z}/attachments/token/t1/?name=a.pdf");
    let data = zd.download_attachment(&url, 100, in_secs(5)).await.unwrap();
    assert_eq!(data, b"%PDF-1.7");

    let zendesk_heads = zendesk_log.lock().unwrap().clone();
    let storage_heads = storage_log.lock().unwrap().clone();
    assert_eq!(zendesk_heads.len(), 2);
    assert_eq!(storage_heads.len(), 2);
    assert!(zendesk_heads[0].starts_with("GET /attachments/token/t1/"));
    assert!(authorized(&zendesk_heads[0]), "{}", zendesk_heads[0]);
    for head in &storage_heads {
        assert!(!authorized(head), "credentials sent to storage: {head}");
    }
    // Back on the account after leaving it: still no credentials.
    assert!(zendesk_heads[1].starts_with("GET /back "));
    assert!(!authorized(&zendesk_heads[1]), "{}", zendesk_heads[1]);
}

#[tokio::test]
async fn redirect_loops_end_in_a_permanent_error() {
    let zendesk = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let z = zendesk.local_addr().unwrap();
    let log = scripted(zendesk, vec![("/loop".into(), redirect_to("/loop"))]);
    let zd = raw_client(z);
    let error = zd
        .download_attachment(&format!("http://{z}/loop"), 100, in_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ZendeskError::AttachmentUrl { .. }),
        "{error:?}"
    );
    assert!(error.is_permanent());
    // The first request and five redirects, once: not retried.
    assert_eq!(log.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn chunked_attachments_are_cut_at_the_limit() {
    let zendesk = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let z = zendesk.local_addr().unwrap();
    let mut response =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/pdf\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        response.extend_from_slice(b"400\r\n");
        response.extend_from_slice(&[b'x'; 1024]);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    let log = scripted(zendesk, vec![("/big".into(), response)]);
    let zd = raw_client(z);
    let url = format!("http://{z}/big");
    match zd.download_attachment(&url, 2000, in_secs(5)).await {
        Err(ZendeskError::AttachmentTooLarge { size, limit }) => {
            assert_eq!(limit, 2000);
            assert!(size > 2000 && size <= 4096, "{size}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(log.lock().unwrap().len(), 1);
    // Within the limit, the same chunked body arrives whole.
    let data = zd
        .download_attachment(&url, 4096, in_secs(5))
        .await
        .unwrap();
    assert_eq!(data, vec![b'x'; 4096]);
}

#[tokio::test]
async fn api_calls_do_not_follow_redirects_off_the_account() {
    let zendesk = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let elsewhere = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let (z, e) = (
        zendesk.local_addr().unwrap(),
        elsewhere.local_addr().unwrap(),
    );
    scripted(
        zendesk,
        vec![(
            "/api/v2/users/7".into(),
            redirect_to(&format!("http://{e}/api/v2/users/7")),
        )],
    );
    let elsewhere_log = scripted(elsewhere, vec![]);
    let error = raw_client(z).get_user(7, in_secs(5)).await.unwrap_err();
    assert!(
        matches!(error, ZendeskError::Invalid { status: 302, .. }),
        "{error:?}"
    );
    assert!(elsewhere_log.lock().unwrap().is_empty());
}

// ----- webhooks, trigger categories and triggers ------------------------------------------------

const HOOK_TOKEN: &str = "hook-bearer-s3cr3t-0123456789abcdef";

fn hook_spec(name: &str) -> WebhookSpec {
    WebhookSpec::for_triggers(
        name,
        "https://pec-connector.example.it/zendesk/webhook",
        Some(HOOK_TOKEN.to_string().into()),
    )
}

fn reply_trigger(category_id: &str, webhook_id: &str, address: &str) -> TriggerSpec {
    TriggerSpec {
        title: format!("Reply by PEC Connector [{address}]"),
        active: true,
        category_id: Some(category_id.to_string()),
        conditions: Conditions {
            all: vec![
                Condition::new("update_type", "is", "Change"),
                Condition::new("comment_is_public", "is", "true"),
                Condition::new("current_tags", "includes", "pec"),
            ],
            any: vec![],
        },
        actions: vec![
            TriggerAction::notification_webhook(webhook_id, r#"{"ticket_id":"{{ticket.id}}"}"#),
            TriggerAction::new("current_tags", "pec_out_pending"),
        ],
        description: Some("PEC connector".into()),
    }
}

fn assert_no_token(text: &str) {
    assert!(!text.contains(HOOK_TOKEN), "token leaked: {text}");
}

#[tokio::test]
async fn webhooks_round_trip_with_their_token_and_signing_secret() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let spec = hook_spec("PEC Connector");
    assert_no_token(&format!("{spec:?}"));
    let created = zd.create_webhook(&spec, in_secs(5)).await.unwrap();
    assert_eq!(created.id.len(), 26);
    assert_eq!(created.name, "PEC Connector");
    assert_eq!(created.status, "active");
    assert_eq!(created.subscriptions, ["conditional_ticket_events"]);
    assert_eq!(
        created.authentication.as_ref().unwrap().kind,
        "bearer_token"
    );
    assert_no_token(&format!("{created:?}"));

    let stored = sim.webhooks();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].bearer_token(), Some(HOOK_TOKEN));
    assert_eq!(
        stored[0].authentication.as_ref().unwrap()["add_position"],
        "header"
    );

    assert_eq!(
        zd.get_webhook(&created.id, in_secs(5)).await.unwrap(),
        created
    );
    let secret = zd
        .webhook_signing_secret(&created.id, in_secs(5))
        .await
        .unwrap();
    assert_eq!(
        Some(secrecy::ExposeSecret::expose_secret(&secret).to_string()),
        sim.webhook_signing_secret(&created.id)
    );
    assert!(!format!("{secret:?}").contains(&sim.webhook_signing_secret(&created.id).unwrap()));

    let mut changed = hook_spec("PEC Connector");
    changed.endpoint = "https://new.example.it/zendesk/webhook".into();
    changed.authentication = Some(zendesk::WebhookAuth::bearer("rotated".to_string().into()));
    zd.update_webhook(&created.id, &changed, in_secs(5))
        .await
        .unwrap();
    let read = zd.get_webhook(&created.id, in_secs(5)).await.unwrap();
    assert_eq!(read.endpoint, "https://new.example.it/zendesk/webhook");
    assert_eq!(sim.webhooks()[0].bearer_token(), Some("rotated"));

    zd.delete_webhook(&created.id, in_secs(5)).await.unwrap();
    assert!(sim.webhooks().is_empty());
    for result in [
        zd.get_webhook(&created.id, in_secs(5)).await.map(|_| ()),
        zd.delete_webhook(&created.id, in_secs(5)).await,
        zd.update_webhook(&created.id, &spec, in_secs(5)).await,
        zd.webhook_signing_secret(&created.id, in_secs(5))
            .await
            .map(|_| ()),
    ] {
        assert!(
            matches!(result, Err(ZendeskError::NotFound { .. })),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn webhook_lists_follow_cursor_pages_and_filter_by_name() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    for i in 0..103 {
        zd.create_webhook(&hook_spec(&format!("PEC Connector {i}")), in_secs(5))
            .await
            .unwrap();
    }
    zd.create_webhook(&hook_spec("Other integration"), in_secs(5))
        .await
        .unwrap();
    let all = zd.list_webhooks(None, in_secs(10)).await.unwrap();
    assert_eq!(all.len(), 104);
    let mut ids: Vec<&str> = all.iter().map(|w| w.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 104);
    let ours = zd
        .list_webhooks(Some("pec connector"), in_secs(10))
        .await
        .unwrap();
    assert_eq!(ours.len(), 103);
    assert!(ours.iter().all(|w| w.name.starts_with("PEC Connector")));
    let pages: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v2/webhooks")
        .collect();
    assert_eq!(pages.len(), 4, "two pages per listing");
    let second = pages[1].query.clone().unwrap_or_default();
    assert!(second.contains("page%5Bafter%5D="), "{second}");
    let filtered = pages[3].query.clone().unwrap_or_default();
    assert!(
        filtered.contains("filter%5Bname_contains%5D=pec+connector"),
        "{filtered}"
    );
}

#[tokio::test]
async fn trigger_categories_round_trip_and_refuse_deletion_while_used() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let category = zd
        .create_trigger_category("PEC Connector", in_secs(5))
        .await
        .unwrap();
    assert_eq!(category.name, "PEC Connector");
    assert!(category.id.parse::<u64>().is_ok(), "{}", category.id);
    for i in 0..101 {
        zd.create_trigger_category(&format!("Other {i}"), in_secs(5))
            .await
            .unwrap();
    }
    let listed = zd.list_trigger_categories(in_secs(10)).await.unwrap();
    assert_eq!(listed.len(), 102);
    assert_eq!(listed[0], category);

    let hook = zd
        .create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap();
    let trigger = zd
        .create_trigger(
            &reply_trigger(&category.id, &hook.id, "a@pec.it"),
            in_secs(5),
        )
        .await
        .unwrap();
    match zd.delete_trigger_category(&category.id, in_secs(5)).await {
        Err(ZendeskError::Invalid {
            status: 400, error, ..
        }) => {
            assert_eq!(error, "TriggerCategoryNotEmpty")
        }
        other => panic!("{other:?}"),
    }
    zd.delete_trigger(trigger.id, in_secs(5)).await.unwrap();
    zd.delete_trigger_category(&category.id, in_secs(5))
        .await
        .unwrap();
    assert_eq!(sim.trigger_categories().len(), 101);
    assert!(matches!(
        zd.delete_trigger_category(&category.id, in_secs(5)).await,
        Err(ZendeskError::NotFound { .. })
    ));
}

#[tokio::test]
async fn triggers_round_trip_and_updates_keep_what_an_admin_added() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let category = zd
        .create_trigger_category("PEC Connector", in_secs(5))
        .await
        .unwrap();
    let hook = zd
        .create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap();
    let spec = reply_trigger(&category.id, &hook.id, "a@pec.it");
    let created = zd.create_trigger(&spec, in_secs(5)).await.unwrap();
    assert_eq!(created.spec(), spec);
    assert_eq!(
        zd.get_trigger(created.id, in_secs(5)).await.unwrap(),
        created
    );
    assert_eq!(
        sim.trigger(created.id).unwrap().webhook_ids(),
        [hook.id.as_str()]
    );

    // An admin adds a condition and an action by hand.
    assert!(sim.edit_trigger(created.id, |t| {
        t.all
            .push(serde_json::json!({"field": "group_id", "operator": "is", "value": "42"}));
        t.actions
            .push(serde_json::json!({"field": "priority", "value": "high"}));
    }));
    let read = zd.get_trigger(created.id, in_secs(5)).await.unwrap();
    assert_eq!(read.conditions.all.len(), 4);
    let mut edited = read.spec();
    edited.title = "Reply by PEC Connector [b@pec.it]".into();
    let updated = zd
        .update_trigger(created.id, &edited, in_secs(5))
        .await
        .unwrap();
    assert_eq!(updated.title, "Reply by PEC Connector [b@pec.it]");
    assert!(
        updated
            .conditions
            .all
            .contains(&Condition::new("group_id", "is", "42"))
    );
    assert!(
        updated
            .actions
            .contains(&TriggerAction::new("priority", "high"))
    );

    // What is not sent is gone: PUT replaces conditions and actions wholesale.
    let replaced = zd
        .update_trigger(created.id, &spec, in_secs(5))
        .await
        .unwrap();
    assert_eq!(replaced.conditions, spec.conditions);
    assert_eq!(replaced.actions, spec.actions);

    let other = zd
        .create_trigger(
            &reply_trigger(&category.id, &hook.id, "c@pec.it"),
            in_secs(5),
        )
        .await
        .unwrap();
    let uncategorized = TriggerSpec {
        category_id: None,
        ..reply_trigger(&category.id, &hook.id, "d@pec.it")
    };
    zd.create_trigger(&uncategorized, in_secs(5)).await.unwrap();
    let in_category = zd
        .list_triggers(Some(&category.id), in_secs(5))
        .await
        .unwrap();
    let ids: Vec<u64> = in_category.iter().map(|t| t.id).collect();
    assert_eq!(ids, [created.id, other.id]);
    assert_eq!(zd.list_triggers(None, in_secs(5)).await.unwrap().len(), 3);

    zd.delete_trigger(created.id, in_secs(5)).await.unwrap();
    assert!(matches!(
        zd.get_trigger(created.id, in_secs(5)).await,
        Err(ZendeskError::NotFound { .. })
    ));
    assert!(matches!(
        zd.update_trigger(created.id, &spec, in_secs(5)).await,
        Err(ZendeskError::NotFound { .. })
    ));
    assert!(matches!(
        zd.delete_trigger(created.id, in_secs(5)).await,
        Err(ZendeskError::NotFound { .. })
    ));
}

#[tokio::test]
async fn trigger_lists_follow_cursor_pages() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let spec = TriggerSpec {
        title: "t".into(),
        active: false,
        category_id: None,
        conditions: Conditions::default(),
        actions: vec![TriggerAction::new("status", "open")],
        description: None,
    };
    for i in 0..105 {
        let spec = TriggerSpec {
            title: format!("t{i}"),
            ..spec.clone()
        };
        zd.create_trigger(&spec, in_secs(5)).await.unwrap();
    }
    let all = zd.list_triggers(None, in_secs(10)).await.unwrap();
    assert_eq!(all.len(), 105);
    assert_eq!(all[104].title, "t104");
    assert!(all.iter().all(|t| !t.active));
    let pages = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v2/triggers")
        .count();
    assert_eq!(pages, 2);
}

#[tokio::test]
async fn invalid_triggers_surface_the_field_details() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let category = zd
        .create_trigger_category("PEC Connector", in_secs(5))
        .await
        .unwrap();
    let hook = zd
        .create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap();
    let no_actions = TriggerSpec {
        actions: vec![],
        ..reply_trigger(&category.id, &hook.id, "a@pec.it")
    };
    let unknown_hook = reply_trigger(&category.id, "01HXXXXXXXXXXXXXXXXXXXXXXX", "a@pec.it");
    let unknown_category = reply_trigger("999999", &hook.id, "a@pec.it");
    for (spec, field) in [
        (no_actions, "actions"),
        (unknown_hook, "actions"),
        (unknown_category, "category_id"),
    ] {
        match zd.create_trigger(&spec, in_secs(5)).await {
            Err(ZendeskError::Invalid {
                status: 422,
                error,
                details,
                ..
            }) => {
                assert_eq!(error, "RecordInvalid");
                assert_eq!(details[0].field, field, "{details:?}");
                assert!(!details[0].description.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(sim.triggers().is_empty());
    // Creates are not repeated after a 422 (one request each).
    let posts = sim
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/v2/triggers")
        .count();
    assert_eq!(posts, 3);
}

#[tokio::test]
async fn webhook_errors_never_carry_the_token() {
    let sim = ZendeskSimulator::start().await.unwrap();
    let zd = client(&sim);
    let mut bad = hook_spec("PEC Connector");
    bad.endpoint = "ftp://nowhere".into();
    let error = zd.create_webhook(&bad, in_secs(5)).await.unwrap_err();
    match &error {
        ZendeskError::Invalid {
            status: 422,
            details,
            ..
        } => assert_eq!(details[0].field, "endpoint"),
        other => panic!("{other:?}"),
    }
    assert_no_token(&format!("{error} {error:?}"));

    // A create is not repeated after a 500 (it may have been processed) ...
    sim.fail_next(1, Fault::Status(500));
    let error = zd
        .create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ZendeskError::Server { status: 500, .. }),
        "{error:?}"
    );
    assert_no_token(&format!("{error} {error:?}"));
    // ... but is after a 503 or a 429, which Zendesk did not process.
    sim.unavailable_next(1);
    sim.rate_limit_next(1, 0);
    zd.create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap();
    assert_eq!(sim.webhooks().len(), 1);

    let wrong = ZendeskClient::new(ZendeskConfig {
        auth: Auth::Bearer {
            token: "nope".to_string().into(),
        },
        ..config(&sim)
    })
    .unwrap();
    let error = wrong
        .create_webhook(&hook_spec("PEC Connector"), in_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(error, ZendeskError::Unauthorized { .. }));
    assert_no_token(&format!("{error} {error:?}"));
}
