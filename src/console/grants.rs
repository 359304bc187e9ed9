//! The database users a task needs: the exact `CREATE USER` and `GRANT`
//! statements for each side, from the task's types and objects. Shown on the
//! console's "Prepare users" page and printed by `ferry grants TASK.json`.
//!
//! The privileges are the ones the precheck tries (ferry-mysql's precheck):
//! SELECT on what the source gives; REPLICATION SLAVE and REPLICATION CLIENT
//! (MariaDB's BINLOG MONITOR) for a link that reads a binlog; the write set
//! (SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX) on every
//! database Ferry writes to, including its meta schema on both sides. The
//! password is a placeholder: Ferry never prints one.

use std::collections::BTreeSet;

use ferry_core::task::{Dialect, MigrationType, TaskSpec};

const WRITE: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX";

/// The statements for one side.
#[derive(Debug, Clone, PartialEq)]
pub struct SideGrants {
    pub role: &'static str,
    pub user: String,
    pub statements: Vec<String>,
    pub notes: Vec<String>,
}

fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn quote_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The database part of a `db.table` pattern, or `None` when it is a wildcard.
fn db_of(pattern: &str) -> Option<&str> {
    let db = pattern.split_once('.').map(|(d, _)| d).unwrap_or(pattern);
    (!db.contains(['*', '?'])).then_some(db)
}

/// `ON` objects for the databases a pattern list names (`*.*` when one is a wildcard).
fn objects(dbs: &BTreeSet<Option<String>>) -> Vec<String> {
    if dbs.contains(&None) {
        return vec!["*.*".into()];
    }
    dbs.iter()
        .flatten()
        .map(|d| format!("{}.*", quote_ident(d)))
        .collect()
}

fn account(user: &str) -> String {
    format!("{}@'%'", quote_str(user))
}

fn create(user: &str) -> String {
    format!(
        "CREATE USER IF NOT EXISTS {} IDENTIFIED BY '<password>';",
        account(user)
    )
}

fn grant(privs: &str, on: &str, user: &str) -> String {
    format!("GRANT {privs} ON {on} TO {};", account(user))
}

/// The source's and the target's statements for `spec`, for users `source_user` and `target_user`.
pub fn grants(spec: &TaskSpec, source_user: &str, target_user: &str) -> [SideGrants; 2] {
    let meta = format!("{}.*", quote_ident(&spec.options.meta_schema));
    let source_dbs: BTreeSet<Option<String>> = spec
        .objects
        .include
        .iter()
        .map(|p| db_of(p).map(str::to_string))
        .collect();
    let target_dbs: BTreeSet<Option<String>> = spec
        .objects
        .include
        .iter()
        .map(|p| {
            let db = db_of(p)?;
            match p.split_once('.') {
                Some((d, t)) if !t.contains(['*', '?']) => Some(spec.target_name(d, t).0),
                _ => Some(spec.objects.rename.get(db).cloned().unwrap_or(db.into())),
            }
        })
        .collect();
    let incremental = spec.has(MigrationType::Incremental);
    let reverse = spec.has(MigrationType::Reverse);

    let mut src = vec![create(source_user)];
    let mut src_notes = Vec::new();
    let read = if reverse { WRITE } else { "SELECT" };
    for on in objects(&source_dbs) {
        src.push(grant(read, &on, source_user));
    }
    if incremental {
        src.push(grant(
            "REPLICATION SLAVE, REPLICATION CLIENT",
            "*.*",
            source_user,
        ));
        src.push(grant(WRITE, &meta, source_user));
        src_notes.push(format!(
            "the link writes a heartbeat row in {meta} on the source to measure lag; the binlog must be on \
             (log_bin, binlog_format=ROW, binlog_row_image=FULL)"
        ));
    }
    if reverse {
        src_notes.push(
            "reverse: after the switch, changes made on the target are written back to the source"
                .into(),
        );
    }
    src_notes.push(
        "replace '%' by the address Ferry connects from to narrow the account, and <password> by a password \
         you keep in the secrets file"
            .into(),
    );

    let mut tgt = vec![create(target_user)];
    let mut tgt_notes = Vec::new();
    for on in objects(&target_dbs) {
        tgt.push(grant(WRITE, &on, target_user));
    }
    tgt.push(grant(WRITE, &meta, target_user));
    if reverse {
        tgt.push(grant(
            "REPLICATION SLAVE, REPLICATION CLIENT",
            "*.*",
            target_user,
        ));
        if spec.target.dialect == Dialect::Oceanbase {
            tgt_notes.push(
                "OceanBase keeps no binlog itself: a reverse link reads its Binlog Service (obbinlog, through ODP)"
                    .into(),
            );
        }
    }
    tgt_notes.push(format!(
        "Ferry keeps its checkpoints in {meta} on the target, in the same transaction as the rows it applies"
    ));
    [
        SideGrants {
            role: "source",
            user: source_user.into(),
            statements: src,
            notes: src_notes,
        },
        SideGrants {
            role: "target",
            user: target_user.into(),
            statements: tgt,
            notes: tgt_notes,
        },
    ]
}

/// The statements as text, one side after the other (what `ferry grants` prints).
pub fn render(sides: &[SideGrants]) -> String {
    let mut out = String::new();
    for s in sides {
        out.push_str(&format!("-- on the {} (user {})\n", s.role, s.user));
        for n in &s.notes {
            out.push_str(&format!("-- {n}\n"));
        }
        for st in &s.statements {
            out.push_str(st);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(types: &str, include: &str) -> TaskSpec {
        TaskSpec::from_json(&format!(
            r#"{{"task_id":"t","source":{{"secret":"s"}},"target":{{"secret":"d","dialect":"oceanbase"}},
               "types":{types},"objects":{{"include":{include},"rename":{{"shop":"shop_ob"}}}}}}"#
        ))
        .expect("spec")
    }

    #[test]
    fn full_copy_needs_select_on_the_source_and_writes_on_the_renamed_target() {
        let [s, t] = grants(&spec(r#"["schema","full"]"#, r#"["shop.*"]"#), "mig", "obm");
        assert_eq!(
            s.statements,
            vec![
                "CREATE USER IF NOT EXISTS 'mig'@'%' IDENTIFIED BY '<password>';",
                "GRANT SELECT ON `shop`.* TO 'mig'@'%';",
            ]
        );
        assert_eq!(
            t.statements[1],
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX ON `shop_ob`.* TO 'obm'@'%';"
        );
        assert_eq!(
            t.statements[2],
            "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX ON `ferry_meta`.* TO 'obm'@'%';"
        );
    }

    #[test]
    fn incremental_needs_replication_and_a_wildcard_grants_on_everything() {
        let [s, _] = grants(
            &spec(r#"["schema","full","incremental"]"#, r#"["*.orders"]"#),
            "mig",
            "obm",
        );
        assert!(s
            .statements
            .contains(&"GRANT SELECT ON *.* TO 'mig'@'%';".to_string()));
        assert!(s
            .statements
            .iter()
            .any(|st| st.starts_with("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.*")));
    }

    #[test]
    fn names_are_quoted() {
        let [s, _] = grants(&spec(r#"["full"]"#, r#"["we`ird.*"]"#), "o'hara", "x");
        assert_eq!(
            s.statements[1],
            "GRANT SELECT ON `we``ird`.* TO 'o\\'hara'@'%';"
        );
    }
}
