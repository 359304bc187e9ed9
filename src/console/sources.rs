//! Data sources: the entries of the local secrets file, listed without their
//! passwords, added through the console (the file is written mode 0600), and
//! tested with the connectivity and privilege items of the precheck.
//!
//! Invariant: a password read from the form goes into the secrets file and
//! nowhere else: not into a page, a log line or an error message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_core::model::CheckItem;
use ferry_core::secret::DbSecret;
use ferry_core::task::TaskSpec;
use ferry_core::FerryError;
use ferry_local::FileSecrets;
use ferry_mysql::Endpoint;
use serde_json::{json, Map, Value};

/// What the console shows of a data source.
#[derive(Debug, Clone)]
pub struct SourceView {
    pub name: String,
    pub engine: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub tls: String,
    /// Why the entry cannot be used, if it cannot.
    pub problem: Option<String>,
}

/// The names in the secrets file (none when it does not exist yet).
fn names(file: &Path) -> Result<Vec<String>, FerryError> {
    if !file.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(file).map_err(|e| {
        FerryError::BadSecret(format!(
            "cannot read the secrets file {}: {e}",
            file.display()
        ))
    })?;
    let v: Value = serde_json::from_str(&text).map_err(|_| {
        FerryError::BadSecret(format!(
            "the secrets file {} is not a JSON object of secrets; fix or move it",
            file.display()
        ))
    })?;
    Ok(v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default())
}

pub fn list(secrets: &FileSecrets) -> Result<Vec<SourceView>, FerryError> {
    let mut out = Vec::new();
    for name in names(secrets.file())? {
        out.push(match secrets.lookup(&name) {
            Ok(s) => view(&name, &s),
            Err(e) => SourceView {
                name: name.clone(),
                engine: String::new(),
                host: String::new(),
                port: 0,
                user: String::new(),
                tls: String::new(),
                problem: Some(e.message().to_string()),
            },
        });
    }
    Ok(out)
}

fn view(name: &str, s: &DbSecret) -> SourceView {
    SourceView {
        name: name.to_string(),
        engine: s.engine.clone(),
        host: s.host.clone(),
        port: s.port,
        user: s.username.clone(),
        tls: s
            .tls
            .as_ref()
            .map(|t| format!("{:?}", t.mode).to_lowercase())
            .unwrap_or_else(|| "disabled".into()),
        problem: None,
    }
}

/// A new data source from the console's form.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub name: String,
    pub engine: String,
    pub host: String,
    pub port: String,
    pub user: String,
    pub password: String,
    pub tls: String,
}

/// Add (or replace) an entry of the secrets file, keeping the file mode 0600.
pub fn add(secrets: &FileSecrets, new: &NewSource) -> Result<(), FerryError> {
    let name = new.name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(FerryError::BadSecret(
            "the data source needs a name of letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let port: u16 = new.port.trim().parse().map_err(|_| {
        FerryError::BadSecret(format!(
            "data source \"{name}\": port \"{}\" is not a number from 1 to 65535",
            new.port.trim()
        ))
    })?;
    let tls = match new.tls.as_str() {
        "" | "disabled" => None,
        m @ ("required" | "skip-verify") => Some(json!({ "mode": m })),
        other => {
            return Err(FerryError::BadSecret(format!(
                "data source \"{name}\": TLS mode \"{other}\" is not one of disabled, required, skip-verify"
            )))
        }
    };
    let mut entry = json!({
        "engine": new.engine.trim(),
        "host": new.host.trim(),
        "port": port,
        "username": new.user.trim(),
        "password": new.password,
    });
    if let Some(t) = tls {
        entry["tls"] = t;
    }
    // Validates every field, naming the field and never the value.
    DbSecret::from_json(name, &entry.to_string())?;

    let file = secrets.file();
    let io = |what: &str, e: std::io::Error| {
        FerryError::BadSecret(format!(
            "cannot {what} the secrets file {}: {e}",
            file.display()
        ))
    };
    let mut object = Map::new();
    if file.exists() {
        let mode = std::fs::metadata(file)
            .map_err(|e| io("read", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(FerryError::BadSecret(format!(
                "the secrets file {} has mode {:04o}, so other users can read it; run `chmod 600 {}` first",
                file.display(),
                mode & 0o777,
                file.display()
            )));
        }
        let text = std::fs::read_to_string(file).map_err(|e| io("read", e))?;
        object = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(o)) => o,
            _ => {
                return Err(FerryError::BadSecret(format!(
                    "the secrets file {} is not a JSON object; fix it before adding a data source",
                    file.display()
                )))
            }
        };
    }
    object.insert(name.to_string(), entry);
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    }
    // Written beside the file, mode 0600 from its creation, then renamed over it.
    let text = serde_json::to_string_pretty(&Value::Object(object))
        .map_err(|e| FerryError::Internal(format!("cannot encode the secrets: {e}")))?;
    ferry_core::file::replace_file(file, &text, 0o600).map_err(|e| io("write", e))?;
    Ok(())
}

/// The connectivity, version, binlog and privilege items of the precheck for one data source,
/// as the source (`role == "source"`, reading the binlog) or as the target.
pub async fn test(
    secrets: &FileSecrets,
    name: &str,
    role: &str,
) -> Result<Vec<CheckItem>, FerryError> {
    let secret = secrets.lookup(name)?;
    let probe = TaskSpec::from_json(
        &json!({
            "task_id": "console-test",
            "source": {"secret": name},
            "target": {"secret": name},
            "types": ["schema", "full", "incremental"],
            // Only the meta schema: the target's write check then probes the one database
            // every task writes to, and nothing of the operator's.
            "objects": {"include": ["ferry_meta.probe"]},
        })
        .to_string(),
    )?;
    let ep = Endpoint::new(role, name, secret);
    Ok(if role == "source" {
        ferry_mysql::precheck::check_source(&ep, &probe).await
    } else {
        ferry_mysql::precheck::check_target(&ep, &probe).await
    })
}

/// Databases and their base tables on a data source, live (system schemas left out).
pub async fn browse(
    secrets: &FileSecrets,
    name: &str,
    meta_schema: &str,
) -> Result<Vec<(String, Vec<String>)>, FerryError> {
    use mysql_async::prelude::Queryable;
    let ep = Endpoint::new("source", name, secrets.lookup(name)?);
    let mut conn = ep.connect().await?;
    let rows: Vec<(String, String)> = conn
        .exec(
            "SELECT table_schema, table_name FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys', ?) \
             ORDER BY table_schema, table_name",
            (meta_schema,),
        )
        .await
        .map_err(|e| ferry_mysql::conn::classify(e, "source: listing databases and tables"))?;
    let _ = conn.disconnect().await;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (db, table) in rows {
        match out.last_mut() {
            Some((d, ts)) if *d == db => ts.push(table),
            _ => out.push((db, vec![table])),
        }
    }
    Ok(out)
}
