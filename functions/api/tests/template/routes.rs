//! Every route of [`api::router`] is deployed: the SAM template's `HttpApi` events of the api
//! function name exactly the routes [`api::routes`] lists (SAM's `ANY` covers every method of a
//! path), so no route answers 404 on AWS and no deployed route is one the router does not serve.
//!
//! The template is read by indentation ([`common::entries`]); any event the reader cannot read
//! fails the test.

use crate::common;

use std::collections::BTreeSet;

use common::{entries, template};

/// The function in `template.yaml` that runs [`api::router`].
const API_FUNCTION: &str = "ApiFunction";

/// An event of a function: its name, type and `HttpApi` properties as the template writes them.
#[derive(Debug, PartialEq)]
struct Event {
    name: String,
    kind: Option<String>,
    api_id: Option<String>,
    path: Option<String>,
    method: Option<String>,
}

/// The `HttpApi` events of `function` in a SAM template, and any event whose type cannot be read.
fn http_api_events(template: &str, function: &str) -> Vec<Event> {
    let events_of = ["Resources", function, "Properties", "Events"];
    let mut events: Vec<Event> = Vec::new();
    for common::Entry { keys, value, .. } in entries(template) {
        let Some(rest) = keys.strip_prefix(events_of.map(String::from).as_slice()) else {
            continue;
        };
        let [name, field @ ..] = rest else {
            continue;
        };
        let event = match events.iter_mut().find(|e| &e.name == name) {
            Some(event) => event,
            None => {
                events.push(Event {
                    name: name.clone(),
                    kind: None,
                    api_id: None,
                    path: None,
                    method: None,
                });
                events.last_mut().expect("just pushed")
            }
        };
        match field {
            [k] if k == "Type" => event.kind = Some(value),
            [p, k] if p == "Properties" && k == "ApiId" => event.api_id = Some(value),
            [p, k] if p == "Properties" && k == "Path" => event.path = Some(value),
            [p, k] if p == "Properties" && k == "Method" => event.method = Some(value),
            _ => {}
        }
    }
    events.retain(|e| e.kind.as_deref().is_none_or(|kind| kind == "HttpApi"));
    events
}

#[test]
fn every_route_of_the_router_is_in_the_template_and_nothing_else() {
    let events = http_api_events(&template(), API_FUNCTION);
    assert!(
        !events.is_empty(),
        "no HttpApi event of {API_FUNCTION} in template.yaml"
    );
    let mut problems = Vec::new();

    let mut deployed: BTreeSet<(String, String)> = BTreeSet::new();
    for event in &events {
        let name = &event.name;
        match (&event.kind, &event.api_id, &event.path, &event.method) {
            (Some(_), Some(api_id), Some(path), Some(method)) => {
                if api_id != "!Ref HttpApi" {
                    problems.push(format!(
                        "event {name}: ApiId is {api_id:?}, not !Ref HttpApi"
                    ));
                }
                deployed.insert((method.to_uppercase(), path.clone()));
            }
            _ => problems.push(format!(
                "event {name}: cannot read its Type, ApiId, Path and Method"
            )),
        }
    }

    let routes: BTreeSet<(String, String)> = api::routes()
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    for (method, path) in &routes {
        let any = ("ANY".to_owned(), path.clone());
        if !deployed.contains(&(method.clone(), path.clone())) && !deployed.contains(&any) {
            problems.push(format!(
                "{method} {path}: served by the router, missing from template.yaml"
            ));
        }
    }
    for (method, path) in &deployed {
        let served = if method == "ANY" {
            routes.iter().any(|(_, p)| p == path)
        } else {
            routes.contains(&(method.clone(), path.clone()))
        };
        if !served {
            problems.push(format!(
                "{method} {path}: in template.yaml, not served by the router"
            ));
        }
    }

    assert!(
        problems.is_empty(),
        "template.yaml and api::routes() differ:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_reader_finds_the_known_routes_of_the_template() {
    let events = http_api_events(&template(), API_FUNCTION);
    let found: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.name.as_str(),
                e.method.as_deref().unwrap_or_default(),
                e.path.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    for known in [
        ("Health", "GET", "/health"),
        ("Webhook", "POST", "/webhooks/zendesk"),
        ("Accounts", "ANY", "/accounts"),
        ("Account", "ANY", "/accounts/{id}"),
        ("PollNow", "POST", "/accounts/{id}/poll"),
    ] {
        assert!(found.contains(&known), "{known:?} not found in {found:?}");
    }
    // The poller's schedule events are not the api's.
    assert!(http_api_events(&template(), "PollerFunction").is_empty());
}

#[test]
fn the_reader_follows_indentation_not_names() {
    let template = r#"
Resources:
  Other:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        Elsewhere:
          Type: HttpApi
          Properties: {Path: /other, Method: GET}
        Flow: {Type: HttpApi, Path: /flow, Method: GET}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties:
      Description: >-
        Events:
          Fake:
            Type: HttpApi
      Events:
        # a comment
        Health:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: "/health"   
            Method: GET # the probe
        Scheduled:
          Type: Schedule
          Properties:
            Path: /not-http
        Items:
          Type: HttpApi
          Properties:
            ApiId: !Ref HttpApi
            Path: '/items/{id}'
            Method: ANY
      Policies:
        - Statement:
            - Effect: Allow
              Path: /policy
      Layers:
      - Events:
          Inline:
            Type: HttpApi
        Path: /layer
  Events:
    Type: AWS::SNS::Topic
"#;
    let event = |name: &str, path: &str, method: &str| Event {
        name: name.to_owned(),
        kind: Some("HttpApi".to_owned()),
        api_id: Some("!Ref HttpApi".to_owned()),
        path: Some(path.to_owned()),
        method: Some(method.to_owned()),
    };
    assert_eq!(
        http_api_events(template, "ApiFunction"),
        [
            event("Health", "/health", "GET"),
            event("Items", "/items/{id}", "ANY")
        ]
    );
    // Flow mappings are not read: the events are found, their properties are not (the main
    // test then fails naming them).
    let other: Vec<_> = http_api_events(template, "Other")
        .into_iter()
        .map(|e| (e.name, e.kind, e.path))
        .collect();
    assert_eq!(
        other,
        [
            ("Elsewhere".to_owned(), Some("HttpApi".to_owned()), None),
            ("Flow".to_owned(), None, None),
        ]
    );
}
