//! Database secrets from AWS Secrets Manager, by name or ARN, in the JSON
//! shape of AWS's database secrets (parsed by [`DbSecret::from_json`]).
//!
//! Invariant: a secret's value never leaves this module except as a
//! [`DbSecret`] (whose password does not print); errors name the secret and
//! the fix, never the value. Values are cached for a short TTL so a Lambda
//! instance does not call Secrets Manager on every invocation, yet picks up a
//! rotated password within minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
pub use aws_sdk_secretsmanager::Client;
use ferry_core::secret::{DbSecret, SecretSource};
use ferry_core::FerryError;

use crate::aws_error::classify;

/// How long a fetched secret is used before it is read again.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// [`SecretSource`] over Secrets Manager, with a per-name cache (shared by clones).
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: Client,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, (Instant, DbSecret)>>>,
}

impl SecretsManagerSource {
    pub fn new(config: &SdkConfig) -> Self {
        Self::from_client(Client::new(config))
    }

    pub fn from_client(client: Client) -> Self {
        SecretsManagerSource {
            client,
            ttl: DEFAULT_TTL,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn cached(&self, name: &str) -> Option<DbSecret> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(name)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    fn remember(&self, name: &str, secret: &DbSecret) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), (Instant::now(), secret.clone()));
        }
    }

    async fn fetch(&self, name: &str) -> Result<DbSecret, FerryError> {
        let out = self.client.get_secret_value().secret_id(name).send().await.map_err(|e| {
            let f = classify(&e);
            if f.transient {
                FerryError::Transient(format!("secret \"{name}\": Secrets Manager is not answering now: {}", f.text))
            } else if f.is("ResourceNotFoundException") {
                FerryError::BadSecret(format!(
                    "secret \"{name}\" does not exist in Secrets Manager (this account and region); create it \
                     (`aws secretsmanager create-secret --name {name} --secret-string file://secret.json`) or fix \
                     the task file's \"secret\""
                ))
            } else if f.is("AccessDeniedException") {
                FerryError::BadSecret(format!(
                    "secret \"{name}\": this function may not read it; tag the secret `ferry:task` (any value) or \
                     name it under the stack's SecretNamePrefix"
                ))
            } else if f.is("DecryptionFailure") {
                FerryError::BadSecret(format!(
                    "secret \"{name}\" cannot be decrypted: grant this function kms:Decrypt on the secret's key"
                ))
            } else {
                FerryError::BadSecret(format!("secret \"{name}\" cannot be read: {}", f.code.unwrap_or(f.text)))
            }
        })?;
        let text = out.secret_string().ok_or_else(|| {
            FerryError::BadSecret(format!(
                "secret \"{name}\" holds binary data; store the database secret as a JSON string"
            ))
        })?;
        DbSecret::from_json(name, text)
    }
}

impl SecretSource for SecretsManagerSource {
    async fn get(&self, name: &str) -> Result<DbSecret, FerryError> {
        if let Some(secret) = self.cached(name) {
            return Ok(secret);
        }
        let secret = self.fetch(name).await?;
        self.remember(name, &secret);
        Ok(secret)
    }
}
