//! Zendesk instances besides the deployment's default one: an integrator hosting one deployment
//! for several clients registers each client's Zendesk once (`POST /zendesk-instances`), checked
//! against Zendesk, and names it when registering that client's PEC accounts.

use std::time::{Duration, Instant};

use chrono::Utc;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;
use tracing::info;
use zendesk::ZendeskError;

use crate::admin::{Admin, AdminError};
use crate::domain::{InstanceId, InvalidInput, SecretName, ZendeskAuthKind, ZendeskInstance};

/// An instance as admins see it (never its token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub url: String,
    /// `api_token` or `oauth`.
    pub auth: String,
    pub email: Option<String>,
    /// Where this instance's webhook calls arrive (the account triggers use it).
    pub webhook_path: String,
    pub created_at: chrono::DateTime<Utc>,
}

fn view(i: &ZendeskInstance) -> InstanceView {
    let (auth, email) = match &i.auth {
        ZendeskAuthKind::ApiToken { email } => ("api_token", Some(email.clone())),
        ZendeskAuthKind::OAuth => ("oauth", None),
    };
    InstanceView {
        id: i.id.as_str().to_owned(),
        url: i.url.clone(),
        auth: auth.to_owned(),
        email,
        webhook_path: format!("/webhooks/zendesk/{}", i.id.as_str()),
        created_at: i.created_at,
    }
}

fn bad(field: &'static str, reason: impl Into<String>) -> AdminError {
    AdminError::Invalid(InvalidInput::new(field, reason))
}

fn text(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, AdminError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(bad(field, "must not be empty")),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// A `POST /zendesk-instances` body, read and checked: the instance and its token.
pub struct InstanceRegistration {
    pub instance: ZendeskInstance,
    pub token: SecretString,
}

impl InstanceRegistration {
    /// Reads `{"id", "subdomain" | "url", "email" + "api_token" | "oauth_token"}`; an error
    /// names the field.
    pub fn parse(body: &[u8]) -> Result<Self, AdminError> {
        let (instance, token) = parse(body)?;
        Ok(InstanceRegistration { instance, token })
    }
}

fn parse(body: &[u8]) -> Result<(ZendeskInstance, SecretString), AdminError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("body", format!("not a JSON object: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("body", "must be a JSON object"));
    };
    const KNOWN: [&str; 6] = [
        "id",
        "subdomain",
        "url",
        "email",
        "api_token",
        "oauth_token",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad("body", format!("unknown field {k:?}")));
    }
    let id = text(&obj, "id")?.ok_or_else(|| bad("id", "is required"))?;
    let id = InstanceId::parse(&id).map_err(|e| bad("id", e.reason))?;
    let url = match (text(&obj, "url")?, text(&obj, "subdomain")?) {
        (Some(url), None) => zendesk::base_url_origin(&url).map_err(|reason| bad("url", reason))?,
        (None, Some(sub)) => {
            let ok = sub.len() <= 63
                && sub
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(bad(
                    "subdomain",
                    "must be the part before .zendesk.com (a-z, 0-9, -)",
                ));
            }
            format!("https://{sub}.zendesk.com")
        }
        (Some(_), Some(_)) => return Err(bad("url", "give url or subdomain, not both")),
        (None, None) => return Err(bad("subdomain", "is required (or url)")),
    };
    let secret = |field| -> Result<Option<SecretString>, AdminError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() && !s.chars().any(char::is_control) => {
                Ok(Some(SecretString::from(s.trim().to_owned())))
            }
            Some(_) => Err(bad(field, "must be a non-empty string")),
        }
    };
    let (auth, token) = match (secret("api_token")?, secret("oauth_token")?) {
        (Some(token), None) => {
            let email =
                text(&obj, "email")?.ok_or_else(|| bad("email", "is required with api_token"))?;
            if !email.contains('@') || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(
                    "email",
                    "must be the e-mail address of a Zendesk agent",
                ));
            }
            (ZendeskAuthKind::ApiToken { email }, token)
        }
        (None, Some(token)) => (ZendeskAuthKind::OAuth, token),
        (Some(_), Some(_)) => {
            return Err(bad("api_token", "give api_token or oauth_token, not both"));
        }
        (None, None) => return Err(bad("api_token", "is required (or oauth_token)")),
    };
    Ok((
        ZendeskInstance {
            id,
            url,
            auth,
            created_at: Utc::now(),
        },
        token,
    ))
}

impl Admin {
    /// `POST /zendesk-instances`: checks the credentials against Zendesk (they must belong to
    /// an agent or admin), then keeps the token as a secret and the instance in the store.
    /// Registering the same id again replaces it. Returns the instance and whether it was new.
    pub async fn register_instance(
        &self,
        registration: InstanceRegistration,
    ) -> Result<(InstanceView, bool), AdminError> {
        let directory = self
            .instances
            .as_ref()
            .ok_or_else(|| bad("body", "this deployment serves only its default Zendesk"))?;
        let InstanceRegistration {
            mut instance,
            token,
        } = registration;
        let client = directory.build(&instance, token.clone())?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let token_field = match instance.auth {
            ZendeskAuthKind::ApiToken { .. } => "api_token",
            ZendeskAuthKind::OAuth => "oauth_token",
        };
        let user = match client.current_user(deadline).await {
            Ok(user) => user,
            Err(ZendeskError::Unauthorized { .. } | ZendeskError::Forbidden { .. }) => {
                return Err(AdminError::Check {
                    field: token_field,
                    message:
                        "Zendesk refused these credentials (check the agent e-mail and the token)"
                            .to_owned(),
                });
            }
            Err(
                e @ (ZendeskError::Transport { .. }
                | ZendeskError::Timeout { .. }
                | ZendeskError::NotFound { .. }
                | ZendeskError::DeadlineExceeded { .. }),
            ) => {
                return Err(AdminError::Check {
                    field: "url",
                    message: format!("cannot reach this Zendesk: {e}"),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !matches!(user.role.as_deref(), Some("agent" | "admin")) {
            return Err(AdminError::Check {
                field: token_field,
                message: format!(
                    "the credentials belong to a {} user; the connector needs an agent or admin",
                    user.role.as_deref().unwrap_or("non-agent")
                ),
            });
        }
        let existing = self.store.get_instance(&instance.id).await?;
        if let Some(e) = &existing {
            instance.created_at = e.created_at;
        }
        self.secrets
            .put(&SecretName::ZendeskToken(instance.id.clone()), &token)
            .await?;
        self.store.put_instance(&instance).await?;
        directory.forget(&instance.id);
        info!(instance = %instance.id.as_str(), url = %instance.url, "zendesk instance registered");
        Ok((view(&instance), existing.is_none()))
    }

    /// `GET /zendesk-instances`.
    pub async fn list_instances(&self) -> Result<Vec<InstanceView>, AdminError> {
        Ok(self
            .store
            .list_instances()
            .await?
            .iter()
            .map(view)
            .collect())
    }

    /// `DELETE /zendesk-instances/{id}`: refused while accounts use it; removes its token and
    /// webhook secrets.
    pub async fn delete_instance(&self, id: &InstanceId) -> Result<(), AdminError> {
        if self.store.get_instance(id).await?.is_none() {
            return Err(AdminError::NotFound(id.as_str().to_owned()));
        }
        let accounts = self
            .store
            .list_accounts()
            .await?
            .into_iter()
            .filter(|a| a.zendesk_instance.as_ref() == Some(id))
            .count();
        if accounts > 0 {
            return Err(AdminError::InstanceInUse {
                id: id.as_str().to_owned(),
                accounts,
            });
        }
        for name in [
            SecretName::ZendeskToken(id.clone()),
            SecretName::InstanceWebhookBearerToken(id.clone()),
            SecretName::InstanceWebhookSigningSecret(id.clone()),
        ] {
            self.secrets.delete(&name).await?;
        }
        self.store.delete_instance(id).await?;
        if let Some(d) = &self.instances {
            d.forget(id);
        }
        info!(instance = %id.as_str(), "zendesk instance removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations_are_checked_field_by_field() {
        let (i, _) = parse(br#"{"id": "cliente-a", "subdomain": "acme", "email": "api@acme.it", "api_token": "t0k"}"#).unwrap();
        assert_eq!(i.url, "https://acme.zendesk.com");
        let (i, _) =
            parse(br#"{"id": "cliente-b", "url": "https://b.zendesk.com/", "oauth_token": "o"}"#)
                .unwrap();
        assert_eq!(
            (i.url.as_str(), &i.auth),
            ("https://b.zendesk.com", &ZendeskAuthKind::OAuth)
        );
        // The URL is kept as its origin: what the client's same-host checks compare with.
        for (url, kept) in [
            ("HTTPS://Acme.zendesk.com/", "https://acme.zendesk.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:8080/", "http://[::1]:8080"),
            ("http://localhost:8080/", "http://localhost:8080"),
        ] {
            let body = serde_json::json!({"id": "c", "url": url, "oauth_token": "o"});
            let (i, _) = parse(body.to_string().as_bytes()).unwrap();
            assert_eq!(i.url, kept, "{url}");
        }
        for (body, field) in [
            (
                r#"{"subdomain": "a", "email": "a@b.it", "api_token": "t"}"#,
                "id",
            ),
            (
                r#"{"id": "Bad", "subdomain": "a", "email": "a@b.it", "api_token": "t"}"#,
                "id",
            ),
            (
                r#"{"id": "a", "email": "a@b.it", "api_token": "t"}"#,
                "subdomain",
            ),
            (
                r#"{"id": "a", "url": "http://a.example", "email": "a@b.it", "api_token": "t"}"#,
                "url",
            ),
            (r#"{"id": "a", "subdomain": "a"}"#, "api_token"),
            (
                r#"{"id": "a", "url": "http://127.0.0.1.evil.example", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "url": "http://localhost.evil.example", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "url": "https://x@evil.example", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "url": "https://acme.zendesk.com/api", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "url": "https://acme.zendesk.com/?x=1", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "url": "acme.zendesk.com", "oauth_token": "o"}"#,
                "url",
            ),
            (
                r#"{"id": "a", "subdomain": "a", "api_token": "t"}"#,
                "email",
            ),
            (
                r#"{"id": "a", "subdomain": "a", "api_token": "t", "oauth_token": "o", "email": "a@b.it"}"#,
                "api_token",
            ),
            (
                r#"{"id": "a", "subdomain": "a", "oauth_token": "o", "colour": 1}"#,
                "body",
            ),
        ] {
            match parse(body.as_bytes()) {
                Err(AdminError::Invalid(e)) => assert_eq!(e.field, field, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
