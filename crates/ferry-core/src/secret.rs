//! Database credentials in the JSON shape of AWS's database secrets
//! (`{"engine","host","port","username","password","dbname"}` plus TLS
//! settings). The password is a [`Redacted`] value: it prints as `****` in
//! `Debug` and `Display`, and has no `Serialize`, so it cannot reach logs,
//! errors or the task store by accident.

use std::fmt;
use std::future::Future;

use serde::{Deserialize, Deserializer};

use crate::error::FerryError;

/// A value that never prints. Use [`Redacted::expose`] at the one place that needs it.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Redacted(value)
    }
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Redacted<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Redacted)
    }
}

/// TLS settings of a secret. `mode`: `disabled` (default), `required`
/// (encrypt, verify the server against `ca` or the web PKI roots) or
/// `skip-verify` (encrypt without verifying; for tests only).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    #[serde(default)]
    pub mode: TlsMode,
    /// Path of a PEM file with the CA that signed the server's certificate.
    #[serde(default)]
    pub ca: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    #[default]
    Disabled,
    Required,
    SkipVerify,
}

/// One database secret.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct DbSecret {
    #[serde(default = "default_engine")]
    pub engine: String,
    pub host: String,
    #[serde(
        default = "default_port",
        deserialize_with = "port_from_number_or_string"
    )]
    pub port: u16,
    pub username: String,
    pub password: Redacted<String>,
    #[serde(default)]
    pub dbname: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsSettings>,
}

fn default_engine() -> String {
    "mysql".to_string()
}

fn default_port() -> u16 {
    3306
}

/// AWS secrets store the port as a number; people sometimes write a string.
fn port_from_number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        N(u16),
        S(String),
    }
    match Port::deserialize(d)? {
        Port::N(n) => Ok(n),
        Port::S(s) => s.parse().map_err(|_| {
            serde::de::Error::custom(format!("port \"{s}\" is not a number from 1 to 65535"))
        }),
    }
}

impl DbSecret {
    /// Parse a secret's JSON text. The error names the secret and the field, never the value.
    pub fn from_json(name: &str, text: &str) -> Result<DbSecret, FerryError> {
        let s: DbSecret = serde_json::from_str(text).map_err(|e| {
            FerryError::BadSecret(format!(
                "secret \"{name}\" is not a database secret: {}. Expected JSON like \
                 {{\"engine\":\"mariadb\",\"host\":\"db.example\",\"port\":3306,\"username\":\"ferry\",\"password\":\"...\",\"dbname\":\"shop\"}}.",
                redact_serde_error(&e)
            ))
        })?;
        s.validate(name)?;
        Ok(s)
    }

    fn validate(&self, name: &str) -> Result<(), FerryError> {
        if self.host.trim().is_empty() {
            return Err(FerryError::BadSecret(format!(
                "secret \"{name}\": field \"host\" is empty; set it to the database's host name or address"
            )));
        }
        if self.username.is_empty() {
            return Err(FerryError::BadSecret(format!(
                "secret \"{name}\": field \"username\" is empty; set it to the migration user"
            )));
        }
        if self.port == 0 {
            return Err(FerryError::BadSecret(format!(
                "secret \"{name}\": field \"port\" is 0; set the database's TCP port (usually 3306)"
            )));
        }
        Ok(())
    }

    /// `user@host:port`, safe to print.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.username, self.host, self.port)
    }
}

/// serde_json's messages quote the offending value for some errors
/// (``invalid type: string "hunter2"``); keep field names, drop values.
fn redact_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    if text.starts_with("missing field") || text.starts_with("unknown field") {
        return text;
    }
    format!(
        "a field has the wrong type or an invalid value (line {} column {})",
        e.line(),
        e.column()
    )
}

/// Where stages get credentials: a local secrets file, or AWS Secrets Manager.
pub trait SecretSource: Send + Sync + 'static {
    fn get(&self, name: &str) -> impl Future<Output = Result<DbSecret, FerryError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_prints() {
        let s = DbSecret::from_json(
            "x",
            r#"{"engine":"mariadb","host":"h","port":"3307","username":"u","password":"hunter2"}"#,
        )
        .unwrap();
        assert_eq!(s.port, 3307);
        let shown = format!("{s:?} {}", s.password);
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn malformed_secret_does_not_echo_values() {
        let e = DbSecret::from_json("x", r#"{"host":"h","username":"u","password":12345678}"#)
            .unwrap_err();
        assert_eq!(e.name(), "Ferry.BadSecret");
        assert!(!e.message().contains("12345678"), "{e}");
        let e = DbSecret::from_json(
            "x",
            r#"{"host":"h","username":"u","password":"pw","port":"hunter2"}"#,
        )
        .unwrap_err();
        assert!(!e.message().contains("hunter2"), "{e}");
        assert!(e.message().contains("secret \"x\""), "{e}");
    }
}
