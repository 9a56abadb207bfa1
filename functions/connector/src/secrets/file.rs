//! Secrets in files on one machine, apart from the state database: one file per secret, mode
//! 0600, in a directory of mode 0700. Written atomically (a temporary file, then a rename).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};

use super::SecretsError;
use crate::domain::SecretName;
use crate::ports::Secrets;

/// The file [`Secrets`].
#[derive(Clone, Debug)]
pub struct FileSecrets {
    dir: PathBuf,
}

impl FileSecrets {
    /// Opens (creating if needed) the secrets directory and makes it owner-only (0700).
    pub fn open(dir: &Path) -> Result<Self, SecretsError> {
        let op = format!("open the secrets directory {}", dir.display());
        let io = |source| SecretsError::Io {
            op: op.clone(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `account.<id>` for account passwords (`.` cannot appear in an account id), the key
    /// otherwise.
    /// One flat file per secret: the key with `/` as `.` (`account.<id>`,
    /// `zendesk.<instance>.token`); no id or key part contains a dot.
    fn file_name(name: &SecretName) -> String {
        name.key().replace('/', ".")
    }

    fn parse_file_name(file: &str) -> Option<SecretName> {
        SecretName::parse_key(&file.replace('.', "/")).ok()
    }

    fn path(&self, name: &SecretName) -> PathBuf {
        self.dir.join(Self::file_name(name))
    }
}

#[async_trait]
impl Secrets for FileSecrets {
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        let path = self.path(name);
        let tmp = self.dir.join(format!(".{}.tmp", Self::file_name(name)));
        let op = format!("store secret {name} in {}", path.display());
        let value = SecretString::from(value.expose_secret().to_owned());
        tokio::task::spawn_blocking(move || {
            let io = |source| SecretsError::Io {
                op: op.clone(),
                source,
            };
            let _ = fs::remove_file(&tmp);
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            file.write_all(value.expose_secret().as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            fs::rename(&tmp, &path).map_err(io)?;
            Ok(())
        })
        .await
        .map_err(|e| SecretsError::Unavailable {
            op: format!("store secret {name}"),
            source: Box::new(e),
        })??;
        tracing::debug!(secret = %name, "secret stored");
        Ok(())
    }

    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        let path = self.path(name);
        match tokio::fs::read_to_string(&path).await {
            Ok(value) => Ok(SecretString::from(value)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretsError::NotFound {
                name: name.to_string(),
            }),
            Err(source) => Err(SecretsError::Io {
                op: format!("read secret {name} from {}", path.display()),
                source,
            }),
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
        let path = self.path(name);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {
                tracing::debug!(secret = %name, "secret deleted");
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SecretsError::Io {
                op: format!("delete secret {name} at {}", path.display()),
                source,
            }),
        }
    }

    async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
        let op = format!("list secrets in {}", self.dir.display());
        let io = |source| SecretsError::Io {
            op: op.clone(),
            source,
        };
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            if let Some(name) = entry.file_name().to_str().and_then(Self::parse_file_name) {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AccountId;

    #[tokio::test]
    async fn files_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("secrets");
        let secrets = FileSecrets::open(&dir).unwrap();
        let name = SecretName::AccountPassword(AccountId::parse("a1").unwrap());
        secrets
            .put(&name, &SecretString::from("hunter2"))
            .await
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("account.a1")), 0o600);
        assert_eq!(secrets.get(&name).await.unwrap().expose_secret(), "hunter2");
        assert_eq!(secrets.list().await.unwrap(), vec![name]);
    }
}
