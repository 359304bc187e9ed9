//! Local secrets: a JSON file mapping secret names to database secrets in
//! AWS's JSON shape, or one environment variable per secret.
//!
//! Invariant: a secret is read only from an environment variable
//! `FERRY_SECRET_<NAME>` or from a file that no other user can read (no group
//! or other permission bits, i.e. mode 0600 or 0400); every error names the
//! secret, the file and the variable looked at, and never a secret's value.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ferry_core::secret::{DbSecret, SecretSource};
use ferry_core::FerryError;
use serde_json::{Map, Value};

/// Where the secrets file is when neither `--secrets` nor `FERRY_SECRETS` says otherwise:
/// `$HOME/.config/ferry/secrets.json` (or `$XDG_CONFIG_HOME/ferry/secrets.json`).
pub fn default_secrets_file() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config.join("ferry").join("secrets.json")
}

/// The environment variable that can hold secret `name`: `FERRY_SECRET_` and the name
/// upper-cased, every character other than a letter or digit replaced by `_`.
pub fn secret_env_var(name: &str) -> String {
    let tail: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("FERRY_SECRET_{tail}")
}

/// A [`SecretSource`] over a local secrets file and the environment.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    file: PathBuf,
}

impl FileSecrets {
    /// Secrets from `file`, or from [`default_secrets_file`] when `None`.
    pub fn new(file: Option<PathBuf>) -> FileSecrets {
        FileSecrets {
            file: file.unwrap_or_else(default_secrets_file),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Look a secret up now (the environment first, then the file).
    pub fn lookup(&self, name: &str) -> Result<DbSecret, FerryError> {
        let var = secret_env_var(name);
        if let Some(text) = std::env::var_os(&var) {
            let text = text.into_string().map_err(|_| {
                FerryError::BadSecret(format!(
                    "environment variable {var} (secret \"{name}\") is not valid UTF-8"
                ))
            })?;
            return DbSecret::from_json(name, &text).map_err(|e| {
                FerryError::BadSecret(format!(
                    "{} (read from environment variable {var})",
                    e.message()
                ))
            });
        }
        let entries = self.read_file(name, &var)?;
        let entry = entries.get(name).ok_or_else(|| {
            FerryError::BadSecret(format!(
                "secret \"{name}\" was not found: it is not a key of the secrets file {} and environment \
                 variable {var} is not set. Add \"{name}\": {{\"host\":..,\"port\":..,\"username\":..,\"password\":..}} \
                 to the file, or set {var} to that JSON.",
                self.file.display()
            ))
        })?;
        // Secrets Manager keeps a secret as a JSON string; accept the object or that string.
        let text = match entry {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        DbSecret::from_json(name, &text).map_err(|e| {
            FerryError::BadSecret(format!(
                "{} (in the secrets file {})",
                e.message(),
                self.file.display()
            ))
        })
    }

    /// The file's object, after the permission check.
    fn read_file(&self, name: &str, var: &str) -> Result<Map<String, Value>, FerryError> {
        let file = self.file.display();
        let meta = std::fs::metadata(&self.file).map_err(|e| {
            FerryError::BadSecret(format!(
                "secret \"{name}\" was not found: environment variable {var} is not set and the secrets file \
                 {file} cannot be read ({e}). Create the file (mode 0600) with {{\"{name}\": {{...}}}}, pass \
                 another file with --secrets (or FERRY_SECRETS), or set {var}."
            ))
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FerryError::BadSecret(format!(
                "the secrets file {file} has mode {mode:04o}, so other users can read it; Ferry refuses \
                 to use it. Run `chmod 600 {file}`."
            )));
        }
        let text = std::fs::read_to_string(&self.file).map_err(|e| {
            FerryError::BadSecret(format!("cannot read the secrets file {file}: {e}"))
        })?;
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(FerryError::BadSecret(format!(
                "the secrets file {file} must hold one JSON object mapping secret names to secrets, \
                 e.g. {{\"shop-source\": {{\"host\":\"db\",\"port\":3306,\"username\":\"ferry\",\"password\":\"...\"}}}}"
            ))),
            // Only the position: serde's message can quote a value from the file.
            Err(e) => Err(FerryError::BadSecret(format!(
                "the secrets file {file} is not valid JSON (line {} column {}); fix it and retry",
                e.line(),
                e.column()
            ))),
        }
    }
}

impl SecretSource for FileSecrets {
    async fn get(&self, name: &str) -> Result<DbSecret, FerryError> {
        self.lookup(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, mode: u32, text: &str) -> PathBuf {
        let p = dir.join("secrets.json");
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    const GOOD: &str = r#"{"src": {"host":"h","port":3306,"username":"u","password":"pw-Zq81"},
                          "str": "{\"host\":\"h2\",\"username\":\"u2\",\"password\":\"x\"}"}"#;

    #[test]
    fn reads_objects_and_string_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileSecrets::new(Some(write(dir.path(), 0o600, GOOD)));
        assert_eq!(s.lookup("src").unwrap().host, "h");
        assert_eq!(s.lookup("str").unwrap().username, "u2");
    }

    #[test]
    fn open_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 0o644, GOOD);
        let e = FileSecrets::new(Some(p.clone())).lookup("src").unwrap_err();
        assert_eq!(e.name(), "Ferry.BadSecret");
        let m = e.message();
        assert!(
            m.contains(&p.display().to_string()) && m.contains("0644"),
            "{m}"
        );
        assert!(m.contains(&format!("chmod 600 {}", p.display())), "{m}");
        assert!(!m.contains("pw-Zq81"), "{m}");
    }

    #[test]
    fn missing_secret_names_secret_file_and_variable() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 0o600, GOOD);
        let e = FileSecrets::new(Some(p.clone()))
            .lookup("no-such.secret")
            .unwrap_err();
        let m = e.message();
        assert!(m.contains("\"no-such.secret\""), "{m}");
        assert!(m.contains(&p.display().to_string()), "{m}");
        assert!(m.contains("FERRY_SECRET_NO_SUCH_SECRET"), "{m}");
        let e = FileSecrets::new(Some(dir.path().join("absent.json")))
            .lookup("x")
            .unwrap_err();
        assert!(
            e.message().contains("absent.json") && e.message().contains("FERRY_SECRET_X"),
            "{e}"
        );
    }

    #[test]
    fn malformed_file_does_not_echo_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), 0o600, r#"{"a": {"password": "pw-Zq81" "#);
        let e = FileSecrets::new(Some(p)).lookup("a").unwrap_err();
        assert!(!e.message().contains("pw-Zq81"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        // A name no other test uses, so setting the variable cannot disturb them.
        let var = secret_env_var("env-only.test-7f3a");
        assert_eq!(var, "FERRY_SECRET_ENV_ONLY_TEST_7F3A");
        std::env::set_var(&var, r#"{"host":"envhost","username":"u","password":"p"}"#);
        let s = FileSecrets::new(Some(PathBuf::from("/nonexistent/secrets.json")));
        assert_eq!(s.lookup("env-only.test-7f3a").unwrap().host, "envhost");
        std::env::remove_var(&var);
    }
}
