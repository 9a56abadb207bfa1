//! Least privilege in `template.yaml`: each function's IAM policies let it read exactly the
//! secrets its code reads. The poller reads account passwords (in the shared layout's shards and
//! in secrets of their own) and Zendesk API tokens, never the admin token or the webhook secrets,
//! and changes no secret; only the api moves a version stage, and only of the password shards;
//! no function may `ListSecrets` (it cannot be limited to the connector's secrets) without a
//! comment in the template saying why. The account schedules: the api manages the schedules of
//! the stack's EventBridge Scheduler group only and passes only the scheduler role, to Scheduler
//! only; that role may only invoke the poller; the poller may do none of it.
//!
//! Secret names come from the code ([`SecretName::key`] under the template's `SECRETS_PREFIX`),
//! resource ARNs from the template with sample values for `${Stage}` and the pseudo parameters,
//! matched as IAM matches them (`*` and `?` wildcards). A policy the reader cannot read (a SAM
//! policy template about secrets, `NotResource`, a resource in another form) fails the test.

use crate::common;

use std::collections::BTreeMap;

use common::{Entry, entries, template, unquote};
use connector::domain::{AccountId, InstanceId, SecretName};
use connector::secrets::shard_key;

/// What `${...}` stands for in the sample deployment.
const SAMPLE: [(&str, &str); 4] = [
    ("Stage", "prod"),
    ("AWS::Partition", "aws"),
    ("AWS::Region", "eu-south-1"),
    ("AWS::AccountId", "123456789012"),
];

/// One secret of each kind the connector keeps (its name under the prefix), with whether the
/// poller reads it (the poller's code: `wiring.rs` the default Zendesk's token, `inbound` and
/// `outbound` an account's password — in a shard of the shared layout, or in a secret of its
/// own —, `zendesks.rs` a registered instance's token).
fn secrets() -> Vec<(String, bool)> {
    let account = AccountId::parse("aruba-1").unwrap();
    let instance = InstanceId::parse("cliente-b").unwrap();
    vec![
        (shard_key(0), true),
        (shard_key(17), true),
        (SecretName::AccountPassword(account).key(), true),
        (SecretName::ZendeskApiToken.key(), true),
        (SecretName::ZendeskToken(instance.clone()).key(), true),
        (SecretName::AdminToken.key(), false),
        (SecretName::WebhookSigningSecret.key(), false),
        (SecretName::WebhookBearerToken.key(), false),
        (
            SecretName::InstanceWebhookSigningSecret(instance.clone()).key(),
            false,
        ),
        (
            SecretName::InstanceWebhookBearerToken(instance).key(),
            false,
        ),
    ]
}

/// What a function does to secrets besides reading them.
const WRITES: [&str; 4] = [
    "secretsmanager:PutSecretValue",
    "secretsmanager:CreateSecret",
    "secretsmanager:DeleteSecret",
    "secretsmanager:UpdateSecretVersionStage",
];

/// Reading a secret.
const READS: [&str; 2] = [
    "secretsmanager:GetSecretValue",
    "secretsmanager:BatchGetSecretValue",
];

/// A policy statement of a function, as the template writes it.
#[derive(Debug, Default)]
struct Statement {
    /// Where it is: `<function> policy <n> statement <m> (line <l>)`.
    place: String,
    comments: Vec<String>,
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
    /// `<operator>.<key>=<value>`, e.g. `StringEquals.iam:PassedToService=scheduler.amazonaws.com`.
    conditions: Vec<String>,
    /// `<kind>=<value>`, e.g. `Service=scheduler.amazonaws.com` (trust policies).
    principals: Vec<String>,
    /// Fields the check cannot reason about (`NotAction`, `NotResource`).
    unread: Vec<String>,
}

impl Statement {
    /// Reads one field of the statement (its keys below the statement).
    fn read(&mut self, field: &[String], value: String) {
        match field.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["Effect"] => self.effect = value,
            ["Action"] | ["Action", _] if !value.is_empty() => self.actions.push(value),
            ["Resource"] | ["Resource", _] if !value.is_empty() => self.resources.push(value),
            ["Condition", op, key] | ["Condition", op, key, _] if !value.is_empty() => {
                self.conditions.push(format!("{op}.{key}={value}"))
            }
            ["Principal", kind] | ["Principal", kind, _] if !value.is_empty() => {
                self.principals.push(format!("{kind}={value}"))
            }
            [k @ ("NotAction" | "NotResource" | "NotPrincipal"), ..] => {
                self.unread.push(k.to_owned())
            }
            _ => {}
        }
    }

    /// Whether it allows `action` (IAM wildcards) on anything.
    fn allows_action(&self, action: &str) -> bool {
        self.effect == "Allow" && self.actions.iter().any(|a| allows(a, action))
    }
}

/// The statements under `prefix` (keys `<prefix>.-n.<field>`), e.g. a role's trust policy.
fn statements_at(entries: &[Entry], prefix: &[&str], place: &str) -> Vec<Statement> {
    let prefix: Vec<String> = prefix.iter().map(|k| (*k).to_owned()).collect();
    let mut statements: BTreeMap<String, Statement> = BTreeMap::new();
    for e in entries {
        let Some([statement, field @ ..]) = e.keys.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        statements
            .entry(statement.clone())
            .or_insert_with(|| Statement {
                place: format!("{place} statement {} (line {})", &statement[1..], e.line),
                comments: e.comments.clone(),
                ..Statement::default()
            })
            .read(field, e.value.clone());
    }
    statements.into_values().collect()
}

/// A function's policies: its statements, and the policy items that are not statements (SAM
/// policy templates, managed policies, `!If`) with every key and value written in them.
fn policies(entries: &[Entry], function: &str) -> (Vec<Statement>, BTreeMap<String, String>) {
    let prefix = ["Resources", function, "Properties", "Policies"].map(String::from);
    let mut statements: BTreeMap<(String, String), Statement> = BTreeMap::new();
    let mut others: BTreeMap<String, String> = BTreeMap::new();
    for e in entries {
        let Some([policy, rest @ ..]) = e.keys.strip_prefix(prefix.as_slice()) else {
            continue;
        };
        let [first, statement, field @ ..] = rest else {
            let text = others.entry(policy.clone()).or_default();
            text.push_str(&format!(" {}: {}", rest.join("."), e.value));
            continue;
        };
        if first != "Statement" {
            let text = others.entry(policy.clone()).or_default();
            text.push_str(&format!(" {}: {}", rest.join("."), e.value));
            continue;
        }
        let s = statements
            .entry((policy.clone(), statement.clone()))
            .or_insert_with(|| Statement {
                place: format!(
                    "{function} policy {} statement {} (line {})",
                    &policy[1..],
                    &statement[1..],
                    e.line
                ),
                comments: e.comments.clone(),
                ..Statement::default()
            });
        s.read(field, e.value.clone());
    }
    (statements.into_values().collect(), others)
}

/// Whether `pattern` (IAM: `*` any run of characters, `?` one character) matches `text`.
fn matches(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Classic wildcard matching with one backtrack point.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// `${Name}` replaced by its sample value.
fn substitute(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let name = &rest[start + 2..start + end];
        let (_, value) = SAMPLE
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("no sample value for ${{{name}}} in {text:?}"))?;
        out.push_str(value);
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The ARN of a secret named `name` (Secrets Manager adds `-` and six characters).
fn secret_arn(name: &str) -> String {
    format!("arn:aws:secretsmanager:eu-south-1:123456789012:secret:{name}-AbC123")
}

/// A string value of the template: `!Sub "..."`, `"..."` or plain, with `${...}` substituted.
fn text_value(value: &str) -> Result<String, String> {
    match value.strip_prefix("!Sub ") {
        Some(sub) => substitute(&unquote(sub.trim())),
        None if value.starts_with('!') => Err(format!("cannot read {value:?}")),
        None => substitute(value),
    }
}

/// A `Resource` of a statement as an ARN pattern: `!Sub`, a plain string, or `!Ref` of a
/// secret declared in the template.
fn resource_pattern(entries: &[Entry], resource: &str) -> Result<String, String> {
    let Some(name) = resource.strip_prefix("!Ref ") else {
        return text_value(resource);
    };
    let field = |f: &str| {
        entries
            .iter()
            .find(|e| e.keys == ["Resources", name, f].map(String::from))
            .or_else(|| {
                entries
                    .iter()
                    .find(|e| e.keys == ["Resources", name, "Properties", f].map(String::from))
            })
            .map(|e| e.value.clone())
    };
    match (field("Type").as_deref(), field("Name")) {
        (Some("AWS::SecretsManager::Secret"), Some(n)) => Ok(secret_arn(&text_value(&n)?)),
        _ => Err(format!(
            "cannot read {resource:?}: not a named secret of the template"
        )),
    }
}

/// The prefix of every secret name (`SECRETS_PREFIX` of the functions' environment).
fn secrets_prefix(entries: &[Entry]) -> String {
    let keys = [
        "Globals",
        "Function",
        "Environment",
        "Variables",
        "SECRETS_PREFIX",
    ];
    let e = entries
        .iter()
        .find(|e| e.keys == keys.map(String::from))
        .expect("Globals SECRETS_PREFIX in the template");
    text_value(&e.value).expect("SECRETS_PREFIX readable")
}

/// Whether `action` (with IAM wildcards, case-insensitive) allows `wanted`.
fn allows(action: &str, wanted: &str) -> bool {
    matches(&action.to_ascii_lowercase(), &wanted.to_ascii_lowercase())
}

/// Which of the secrets `names` (keys under the prefix) `function` may act on with any of
/// `actions`, and what in its policies cannot be read.
fn allowed(
    template: &str,
    function: &str,
    actions: &[&str],
    names: &[String],
) -> (Vec<bool>, Vec<String>) {
    let entries = entries(template);
    let prefix = secrets_prefix(&entries);
    let arns: Vec<String> = names
        .iter()
        .map(|n| secret_arn(&format!("{prefix}/{n}")))
        .collect();
    let (statements, others) = policies(&entries, function);
    let mut problems = Vec::new();
    if statements.is_empty() && others.is_empty() {
        problems.push(format!("{function}: no policies found"));
    }
    for (policy, text) in &others {
        if text.to_ascii_lowercase().contains("secret") {
            problems.push(format!(
                "{function} policy {}: cannot tell which secrets it grants:{text}",
                &policy[1..]
            ));
        }
    }
    let mut readable = vec![false; names.len()];
    for s in &statements {
        let reads = actions
            .iter()
            .any(|wanted| s.actions.iter().any(|a| allows(a, wanted)));
        if !s.unread.is_empty() {
            problems.push(format!("{}: cannot check {:?}", s.place, s.unread));
        }
        if s.effect != "Allow" || !reads {
            continue;
        }
        for r in &s.resources {
            match resource_pattern(&entries, r) {
                Ok(pattern) => {
                    for (i, arn) in arns.iter().enumerate() {
                        readable[i] |= matches(&pattern, arn);
                    }
                }
                Err(e) => problems.push(format!("{}: {e}", s.place)),
            }
        }
    }
    (readable, problems)
}

/// Where a function may `ListSecrets` without a comment above the statement saying why.
fn unexplained_list_secrets(template: &str) -> Vec<String> {
    let entries = entries(template);
    let functions: Vec<String> = entries
        .iter()
        .filter(|e| e.keys.len() == 3 && e.keys[0] == "Resources" && e.keys[2] == "Type")
        .filter(|e| e.value == "AWS::Serverless::Function")
        .map(|e| e.keys[1].clone())
        .collect();
    let mut problems = Vec::new();
    for function in &functions {
        let (statements, _) = policies(&entries, function);
        for s in statements {
            let lists = s
                .actions
                .iter()
                .any(|a| allows(a, "secretsmanager:ListSecrets"));
            let explained = s.comments.iter().any(|c| c.contains("ListSecrets"));
            if s.effect == "Allow" && lists && !explained {
                problems.push(format!(
                    "{}: secretsmanager:ListSecrets without a comment saying why",
                    s.place
                ));
            }
        }
    }
    problems
}

/// What is wrong with `function`'s secrets access: a secret it reads but may not, or may read
/// but must not.
fn secret_problems(template: &str, function: &str, expected: &[(String, bool)]) -> Vec<String> {
    let names: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    let (readable, mut problems) = allowed(template, function, &READS, &names);
    for ((name, wanted), can) in expected.iter().zip(readable) {
        match (wanted, can) {
            (true, false) => {
                problems.push(format!("{function} cannot read {name}, which it needs"))
            }
            (false, true) => {
                problems.push(format!("{function} can read {name}, which it must not"))
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn the_poller_reads_passwords_and_zendesk_tokens_never_the_admin_token_or_webhook_secrets() {
    let problems = secret_problems(&template(), "PollerFunction", &secrets());
    assert!(
        problems.is_empty(),
        "template.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_poller_changes_no_secret() {
    let names: Vec<String> = secrets().into_iter().map(|(n, _)| n).collect();
    let (writable, problems) = allowed(&template(), "PollerFunction", &WRITES, &names);
    assert!(problems.is_empty(), "{problems:?}");
    let written: Vec<&String> = names
        .iter()
        .zip(writable)
        .filter_map(|(n, w)| w.then_some(n))
        .collect();
    assert!(written.is_empty(), "the poller may change {written:?}");
}

/// Moving `AWSCURRENT` is the shared layout's compare-and-swap: the api may do it on the
/// password shards, and on nothing else.
#[test]
fn the_api_moves_versions_of_the_password_shards_only() {
    let names: Vec<String> = secrets().into_iter().map(|(n, _)| n).collect();
    let (movable, problems) = allowed(
        &template(),
        "ApiFunction",
        &["secretsmanager:UpdateSecretVersionStage"],
        &names,
    );
    assert!(problems.is_empty(), "{problems:?}");
    for (name, can) in names.iter().zip(movable) {
        assert_eq!(can, name.starts_with("accounts/"), "{name}");
    }
    let (writable, _) = allowed(
        &template(),
        "ApiFunction",
        &[
            "secretsmanager:PutSecretValue",
            "secretsmanager:CreateSecret",
            "secretsmanager:DeleteSecret",
        ],
        &names,
    );
    assert!(writable.iter().all(|w| *w), "{names:?} {writable:?}");
}

#[test]
fn the_api_reads_every_secret_it_keeps() {
    let all: Vec<(String, bool)> = secrets().into_iter().map(|(n, _)| (n, true)).collect();
    let problems = secret_problems(&template(), "ApiFunction", &all);
    assert!(
        problems.is_empty(),
        "template.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn list_secrets_only_with_a_reason() {
    let problems = unexplained_list_secrets(&template());
    assert!(
        problems.is_empty(),
        "template.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_template_names_its_secrets_as_the_code_does() {
    let entries = entries(&template());
    let prefix = secrets_prefix(&entries);
    for (resource, name) in [
        ("AdminTokenSecret", SecretName::AdminToken),
        ("ZendeskApiTokenSecret", SecretName::ZendeskApiToken),
    ] {
        let pattern = resource_pattern(&entries, &format!("!Ref {resource}")).unwrap();
        assert_eq!(pattern, secret_arn(&format!("{prefix}/{}", name.key())));
    }
}

/// A template with only a poller whose policies are `policies` (indented as items of
/// `Policies:`).
fn poller_with(policies: &str) -> String {
    format!(
        r#"
Globals:
  Function:
    Environment:
      Variables:
        SECRETS_PREFIX: !Sub "pec-connector-${{Stage}}"
Resources:
  AdminTokenSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "pec-connector-${{Stage}}/admin-token"
  ZendeskApiTokenSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      Name: !Sub "pec-connector-${{Stage}}/zendesk-api-token"
  PollerFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
{policies}
"#
    )
}

const ARN: &str = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret";

#[test]
fn the_checks_refuse_what_grants_too_much_or_cannot_be_read() {
    let problems = |policies: &str| {
        let t = poller_with(policies);
        let mut p = secret_problems(&t, "PollerFunction", &secrets());
        p.extend(unexplained_list_secrets(&t));
        p
    };
    // Today's policy passes.
    let exact = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Sub "{ARN}:pec-connector-${{Stage}}/accounts/*"
                - !Sub "{ARN}:pec-connector-${{Stage}}/account/*"
                - !Ref ZendeskApiTokenSecret
                - !Sub "{ARN}:pec-connector-${{Stage}}/zendesk/*/token-??????""#
    );
    assert_eq!(problems(&exact), Vec::<String>::new());

    // `account*` reaches both password layouts and nothing else; without the shards the
    // shared layout's passwords cannot be read.
    let both = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Sub "{ARN}:pec-connector-${{Stage}}/account*"
                - !Ref ZendeskApiTokenSecret
                - !Sub "{ARN}:pec-connector-${{Stage}}/zendesk/*/token-??????""#
    );
    assert_eq!(problems(&both), Vec::<String>::new());
    let old = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Sub "{ARN}:pec-connector-${{Stage}}/account/*"
                - !Ref ZendeskApiTokenSecret
                - !Sub "{ARN}:pec-connector-${{Stage}}/zendesk/*/token-??????""#
    );
    assert_eq!(
        problems(&old),
        [
            "PollerFunction cannot read accounts/0, which it needs",
            "PollerFunction cannot read accounts/17, which it needs"
        ]
    );

    // Every secret of the stage: the admin token and the webhook secrets too.
    let broad = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Sub "{ARN}:pec-connector-${{Stage}}/*""#
    );
    let p = problems(&broad);
    assert!(
        p.iter().any(|p| p.contains("can read admin-token")),
        "{p:?}"
    );
    assert!(
        p.iter().any(|p| p.contains("webhook-signing-secret")),
        "{p:?}"
    );
    assert_eq!(p.len(), 5, "{p:?}");

    // Every resource, with the actions as a list and a wildcard action.
    let star = r#"        - Statement:
            - Effect: Allow
              Action:
                - dynamodb:GetItem
                - secretsmanager:Get*
              Resource: "*""#;
    assert!(problems(star).iter().any(|p| p.contains("admin-token")));

    // A name prefix without the separator: `zendesk-api-token*` is fine, `zendesk*` also
    // reaches zendesk/<id>/webhook-bearer-token.
    let prefix = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Sub "{ARN}:pec-connector-${{Stage}}/account*"
                - !Sub "{ARN}:pec-connector-${{Stage}}/zendesk*""#
    );
    let p = problems(&prefix);
    assert!(
        p.iter()
            .any(|p| p.contains("zendesk/cliente-b/webhook-bearer-token")),
        "{p:?}"
    );

    // Too narrow: the instances' tokens are missing.
    let narrow = format!(
        r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource:
                - !Sub "{ARN}:pec-connector-${{Stage}}/account*"
                - !Ref ZendeskApiTokenSecret"#
    );
    assert_eq!(
        problems(&narrow),
        ["PollerFunction cannot read zendesk/cliente-b/token, which it needs"]
    );

    // A Deny, or a statement about other services, grants nothing.
    let deny = format!(
        r#"{exact}
            - Effect: Deny
              Action: secretsmanager:GetSecretValue
              Resource: "*"
            - Effect: Allow
              Action: dynamodb:GetItem
              Resource: "*""#
    );
    assert_eq!(problems(&deny), Vec::<String>::new());

    // What the check cannot read fails it.
    let template_policy = format!(
        r#"{exact}
        - AWSSecretsManagerGetSecretValuePolicy:
            SecretArn: !Ref AdminTokenSecret"#
    );
    assert!(
        problems(&template_policy)
            .iter()
            .any(|p| p.contains("policy 1: cannot tell")),
        "{:?}",
        problems(&template_policy)
    );
    let not_resource = r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              NotResource: !Ref AdminTokenSecret"#;
    assert!(
        problems(not_resource)
            .iter()
            .any(|p| p.contains("NotResource"))
    );
    let joined = r#"        - Statement:
            - Effect: Allow
              Action: secretsmanager:GetSecretValue
              Resource: !Join ["", ["arn:", "*"]]"#;
    assert!(problems(joined).iter().any(|p| p.contains("cannot read")));

    // ListSecrets: only with a comment above the statement naming it.
    let listing = |comment: &str| {
        format!(
            r#"{exact}
            {comment}
            - Effect: Allow
              Action: secretsmanager:ListSecrets
              Resource: "*""#
        )
    };
    let p = problems(&listing("# a comment about something else"));
    assert!(
        p.len() == 1
            && p[0].starts_with("PollerFunction policy 0 statement 1 ")
            && p[0].ends_with("ListSecrets without a comment saying why"),
        "{p:?}"
    );
    assert_eq!(
        problems(&listing(
            "# ListSecrets: the rotation job finds the passwords to rotate"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn wildcards_match_as_iam_matches_them() {
    for (pattern, text, expected) in [
        ("a/*", "a/b/c", true),
        ("a/*", "a", false),
        ("a/*/token-??????", "a/x/token-AbC123", true),
        ("a/*/token-??????", "a/x/webhook-bearer-token-AbC123", false),
        ("a/*/token-??????", "a/x/token-AbC12", false),
        ("*", "", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
    ] {
        assert_eq!(matches(pattern, text), expected, "{pattern} ~ {text}");
    }
}

// ----- the account schedules -----

/// Every Scheduler action there is, with whether the api needs it.
const SCHEDULER_ACTIONS: [(&str, bool); 13] = [
    ("scheduler:CreateSchedule", true),
    ("scheduler:UpdateSchedule", true),
    ("scheduler:GetSchedule", true),
    ("scheduler:DeleteSchedule", true),
    ("scheduler:ListSchedules", true),
    ("scheduler:CreateScheduleGroup", false),
    ("scheduler:DeleteScheduleGroup", false),
    ("scheduler:GetScheduleGroup", false),
    ("scheduler:ListScheduleGroups", false),
    ("scheduler:TagResource", false),
    ("scheduler:UntagResource", false),
    ("scheduler:ListTagsForResource", false),
    ("scheduler:*", false),
];

/// A value of a resource's property in the template (`Resources.<name>.Properties.<field>`).
fn property(entries: &[Entry], resource: &str, field: &str) -> Option<String> {
    entries
        .iter()
        .find(|e| e.keys == ["Resources", resource, "Properties", field].map(String::from))
        .map(|e| e.value.clone())
}

/// The api's environment variable `name`.
fn api_env(entries: &[Entry], name: &str) -> Option<String> {
    let keys = [
        "Resources",
        "ApiFunction",
        "Properties",
        "Environment",
        "Variables",
        name,
    ];
    entries
        .iter()
        .find(|e| e.keys == keys.map(String::from))
        .map(|e| e.value.clone())
}

/// The ARN of an account's schedule in `group`, named as the code names it.
fn schedule_arn(group: &str, account: &str) -> String {
    let name = connector::schedules::scheduler::SchedulerSchedules::schedule_name(
        &AccountId::parse(account).unwrap(),
    );
    format!("arn:aws:scheduler:eu-south-1:123456789012:schedule/{group}/{name}")
}

/// What is wrong with the permissions around the account schedules.
fn schedule_problems(template: &str) -> Vec<String> {
    let entries = entries(template);
    let mut problems = Vec::new();

    // The group the api uses is the stack's, and the role it passes is the stack's.
    let group = match api_env(&entries, "SCHEDULE_GROUP").as_deref() {
        Some(r) => match r.strip_prefix("!Ref ") {
            Some(resource)
                if property(&entries, resource, "Name").is_some()
                    && entries.iter().any(|e| {
                        e.keys == ["Resources", resource, "Type"].map(String::from)
                            && e.value == "AWS::Scheduler::ScheduleGroup"
                    }) =>
            {
                text_value(&property(&entries, resource, "Name").unwrap_or_default())
                    .unwrap_or_else(|e| {
                        problems.push(format!("schedule group name: {e}"));
                        String::new()
                    })
            }
            _ => {
                problems.push(format!(
                    "SCHEDULE_GROUP is {r:?}, not !Ref of the stack's schedule group"
                ));
                String::new()
            }
        },
        None => {
            problems.push("the api has no SCHEDULE_GROUP".to_owned());
            String::new()
        }
    };
    let role = "!GetAtt SchedulerRole.Arn";
    if api_env(&entries, "SCHEDULER_ROLE_ARN").as_deref() != Some(role) {
        problems.push(format!("the api's SCHEDULER_ROLE_ARN is not {role}"));
    }

    // The api: the schedules of its group, nothing else of Scheduler; PassRole of that role only.
    let (statements, _) = policies(&entries, "ApiFunction");
    let ours = schedule_arn(&group, "aruba-1");
    let theirs = schedule_arn("another-group", "aruba-1");
    for (action, needed) in SCHEDULER_ACTIONS {
        let mut on_ours = false;
        for s in statements.iter().filter(|s| s.allows_action(action)) {
            if !needed {
                problems.push(format!(
                    "{}: allows {action}, which the api never calls",
                    s.place
                ));
                continue;
            }
            for r in &s.resources {
                let Ok(pattern) = text_value(r) else {
                    problems.push(format!("{}: cannot read {r:?}", s.place));
                    continue;
                };
                on_ours |= matches(&pattern, &ours);
                // ListSchedules has no resource-level permission: "*" is the only way.
                if action != "scheduler:ListSchedules" && matches(&pattern, &theirs) {
                    problems.push(format!(
                        "{}: allows {action} on schedules of other groups ({r})",
                        s.place
                    ));
                }
            }
        }
        if needed && !on_ours {
            problems.push(format!(
                "ApiFunction cannot {action} on {ours}, which it needs"
            ));
        }
    }
    let mut passes = false;
    for s in statements.iter().filter(|s| s.effect == "Allow") {
        let iam: Vec<&String> = s
            .actions
            .iter()
            .filter(|a| a.starts_with("iam:") || *a == "*")
            .collect();
        if iam.is_empty() {
            continue;
        }
        if iam
            .iter()
            .any(|a| !allows(a, "iam:PassRole") || a.contains('*'))
        {
            problems.push(format!(
                "{}: IAM actions other than iam:PassRole: {iam:?}",
                s.place
            ));
        }
        if s.resources.iter().any(|r| r != role) {
            problems.push(format!(
                "{}: passes roles other than {role}: {:?}",
                s.place, s.resources
            ));
        }
        if !s
            .conditions
            .contains(&"StringEquals.iam:PassedToService=scheduler.amazonaws.com".to_owned())
        {
            problems.push(format!(
                "{}: passes the role to any service, not only scheduler.amazonaws.com",
                s.place
            ));
        }
        passes = true;
    }
    if !passes {
        problems.push("ApiFunction cannot pass the scheduler role".to_owned());
    }

    // The poller schedules nothing and passes nothing.
    let (statements, _) = policies(&entries, "PollerFunction");
    for s in statements.iter().filter(|s| s.effect == "Allow") {
        for a in &s.actions {
            if ["scheduler:", "events:", "iam:"]
                .iter()
                .any(|p| a.starts_with(p))
                || a == "*"
            {
                problems.push(format!("{}: the poller may {a}", s.place));
            }
        }
    }

    // The role: assumed by Scheduler of this account only, and it may only invoke the poller.
    let trust = statements_at(
        &entries,
        &[
            "Resources",
            "SchedulerRole",
            "Properties",
            "AssumeRolePolicyDocument",
            "Statement",
        ],
        "SchedulerRole trust",
    );
    if trust.is_empty() {
        problems.push("no SchedulerRole trust policy".to_owned());
    }
    for s in &trust {
        if s.principals != ["Service=scheduler.amazonaws.com"] || s.actions != ["sts:AssumeRole"] {
            problems.push(format!(
                "{}: trusts {:?} for {:?}, not scheduler.amazonaws.com for sts:AssumeRole",
                s.place, s.principals, s.actions
            ));
        }
        if !s
            .conditions
            .contains(&"StringEquals.aws:SourceAccount=!Ref AWS::AccountId".to_owned())
        {
            problems.push(format!(
                "{}: any account's schedules may assume it",
                s.place
            ));
        }
    }
    let mut grants = Vec::new();
    for e in entries.iter().filter(|e| {
        e.keys.starts_with(
            &["Resources", "SchedulerRole", "Properties", "Policies"].map(String::from),
        ) && e.keys.len() == 6
            && e.keys[5] == "PolicyDocument"
    }) {
        let mut prefix: Vec<&str> = e.keys.iter().map(String::as_str).collect();
        prefix.push("Statement");
        grants.extend(statements_at(&entries, &prefix, "SchedulerRole policy"));
    }
    let invokes = grants.iter().any(|s| {
        s.effect == "Allow"
            && s.actions == ["lambda:InvokeFunction"]
            && s.resources == ["!GetAtt PollerFunction.Arn"]
    });
    if !invokes {
        problems.push("SchedulerRole cannot invoke the poller".to_owned());
    }
    for s in grants.iter().filter(|s| s.effect == "Allow") {
        if s.actions != ["lambda:InvokeFunction"] || s.resources != ["!GetAtt PollerFunction.Arn"] {
            problems.push(format!(
                "{}: the scheduler role may {:?} on {:?}, more than invoking the poller",
                s.place, s.actions, s.resources
            ));
        }
    }
    problems
}

#[test]
fn the_api_manages_its_schedules_only_and_the_scheduler_role_only_invokes_the_poller() {
    let problems = schedule_problems(&template());
    assert!(
        problems.is_empty(),
        "template.yaml:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_schedule_checks_refuse_what_grants_too_much() {
    let t = template();
    let replace = |from: &str, to: &str| {
        assert!(t.contains(from), "template.yaml no longer has {from:?}");
        schedule_problems(&t.replacen(from, to, 1))
    };
    let group = "schedule/pec-connector-${Stage}/*";
    // Every group's schedules.
    let p = replace(group, "schedule/*");
    assert!(
        p.iter().any(|p| p.contains("schedules of other groups")),
        "{p:?}"
    );
    // Scheduler's every action.
    let p = replace("- scheduler:DeleteSchedule", "- scheduler:*");
    assert!(
        p.iter()
            .any(|p| p.contains("allows scheduler:CreateScheduleGroup")),
        "{p:?}"
    );
    // Any role, to any service.
    let p = replace("Resource: !GetAtt SchedulerRole.Arn", "Resource: \"*\"");
    assert!(
        p.iter().any(|p| p.contains("passes roles other than")),
        "{p:?}"
    );
    let p = replace(
        "iam:PassedToService: scheduler.amazonaws.com",
        "iam:PassedToService: lambda.amazonaws.com",
    );
    assert!(p.iter().any(|p| p.contains("to any service")), "{p:?}");
    // A role that may do more than invoke the poller, or that anyone's schedules may assume.
    let p = replace(
        "                Action: lambda:InvokeFunction\n                Resource: !GetAtt PollerFunction.Arn",
        "                Action: lambda:*\n                Resource: \"*\"",
    );
    assert!(
        p.iter().any(|p| p.contains("cannot invoke the poller")),
        "{p:?}"
    );
    let p = replace(
        "                aws:SourceAccount: !Ref AWS::AccountId\n",
        "",
    );
    assert!(
        p.iter().any(|p| p.contains("any account's schedules")),
        "{p:?}"
    );
    // Missing what the code needs.
    let p = replace("- scheduler:UpdateSchedule\n", "");
    assert!(
        p.iter()
            .any(|p| p.contains("cannot scheduler:UpdateSchedule")),
        "{p:?}"
    );
}
