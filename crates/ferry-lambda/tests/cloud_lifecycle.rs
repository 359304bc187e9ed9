//! The operator's lifecycle on the cloud path: after the full copy the state
//! machine on moto's Step Functions loops the incremental slices (Lambda
//! invocations through the harness), the operator's switch flag in DynamoDB
//! turns the link around (target changes flow back to the source), and the
//! stop flag ends the execution through MarkStopped. Into OceanBase, which
//! has no binlog a reverse link can read, the task has no `reverse`: the
//! switch completes the task and ends the execution.
//!
//! `ferry_src` needs write privileges on the source for the reverse link: the
//! test grants them on its own databases and revokes them at the end.

use std::time::Duration;

use ferry_aws::StepFunctions;
use ferry_core::model::TaskState;
use ferry_core::store::Repo;
use ferry_mysql::{qualified, quote_ident};
use ferry_stages::StageEnv;
use ferry_testkit::{
    drop_db, exec, on_both_targets, recreate_db, rows, unique_name, wait_until, Side, TestEnv,
};
use mysql_async::prelude::*;
use serde_json::json;

use crate::cloud_path::{create_secrets, create_state_machine, wait_for_end};
use crate::common::lab::Lab;

const SRC_USER: &str = "ferry_src";

async fn same_rows(t: &TestEnv, src_db: &str, tgt_db: &str) -> bool {
    let mut s = t.admin(Side::Source).await;
    let mut d = t.admin(Side::Target).await;
    rows(&mut s, src_db, "orders").await == rows(&mut d, tgt_db, "orders").await
}

async fn state(repo: &Repo<ferry_aws::DynamoStore>, id: &str) -> Option<TaskState> {
    repo.get_task(id).await.ok().flatten().map(|t| t.state)
}

on_both_targets!(
    sync_switch_reverse_and_stop_on_step_functions,
    super::sync_switch_reverse_and_stop_on_step_functions
);
async fn sync_switch_reverse_and_stop_on_step_functions(t: TestEnv) {
    let reverse = !t.is_oceanbase();
    let (src_db, tgt_db, meta) = (
        unique_name("cloud_lc"),
        unique_name("cloud_lc_t"),
        unique_name("cloud_lc_meta"),
    );
    let mut src = t.admin(Side::Source).await;
    recreate_db(&mut src, &src_db).await;
    let orders = qualified(&src_db, "orders");
    exec(
        &mut src,
        &format!(
            "CREATE TABLE {orders} (id INT PRIMARY KEY, counter INT NOT NULL, note VARCHAR(30))"
        ),
    )
    .await;
    let values: Vec<String> = (1..=300).map(|i| format!("({i}, 0, 'n{i}')")).collect();
    exec(
        &mut src,
        &format!("INSERT INTO {orders} VALUES {}", values.join(",")),
    )
    .await;
    for db in [&src_db, &meta] {
        exec(
            &mut src,
            &format!(
                "GRANT ALL PRIVILEGES ON {}.* TO '{SRC_USER}'@'%'",
                quote_ident(db)
            ),
        )
        .await;
    }

    let lab = Lab::start().await;
    lab.enable_execution().await;
    let secrets = create_secrets(&lab, &t, &src_db).await;
    let machine = create_state_machine(&lab, &unique_name("ferry-lifecycle")).await;
    let id = src_db.replace('_', "-");
    let task = json!({
        "task_id": id,
        "source": {"secret": secrets.0, "dialect": "mariadb"},
        "target": {"secret": secrets.1, "dialect": t.target_dialect},
        "types": if reverse { json!(["schema", "full", "incremental", "reverse"]) }
                 else { json!(["schema", "full", "incremental"]) },
        "objects": {"include": [format!("{src_db}.*")], "rename": {src_db.clone(): tgt_db.clone()}},
        "options": {"chunk_rows": 100, "concurrency": 2, "apply_workers": 2, "meta_schema": meta,
                    "switch_quiet_seconds": 2}
    });
    let sfn = StepFunctions::new(&lab.config);
    let execution = sfn.start(&machine, &id, &task).await.expect("start");
    let repo = Repo::new(lab.store.clone());

    // Forward: rows written after the copy reach the target through the incremental slices.
    wait_until(
        "the forward link runs",
        Duration::from_secs(120),
        || async { state(&repo, &id).await == Some(TaskState::Synchronizing) },
    )
    .await;
    exec(
        &mut src,
        &format!("INSERT INTO {orders} VALUES (1001, 1, 'after copy'), (1002, 2, 'after copy')"),
    )
    .await;
    exec(
        &mut src,
        &format!("UPDATE {orders} SET counter = counter + 5 WHERE id <= 10"),
    )
    .await;
    exec(
        &mut src,
        &format!("DELETE FROM {orders} WHERE id BETWEEN 20 AND 29"),
    )
    .await;
    wait_until(
        "source changes applied to the target",
        Duration::from_secs(90),
        || same_rows(&t, &src_db, &tgt_db),
    )
    .await;

    // Switch: the operator's flag in DynamoDB; then, with a reverse link, target changes flow back.
    repo.update_flags(&id, |f| f.switch_requested = true)
        .await
        .unwrap();
    let mut tgt = t.admin(Side::Target).await;
    let states = if reverse {
        wait_until(
            "the switch is done and the reverse link runs",
            Duration::from_secs(180),
            || async { state(&repo, &id).await == Some(TaskState::ReverseSynchronizing) },
        )
        .await;
        let tgt_orders = qualified(&tgt_db, "orders");
        exec(
            &mut tgt,
            &format!("INSERT INTO {tgt_orders} VALUES (2001, 7, 'on the new primary')"),
        )
        .await;
        exec(
            &mut tgt,
            &format!("UPDATE {tgt_orders} SET note = 'changed on target' WHERE id = 1"),
        )
        .await;
        wait_until(
            "target changes applied back to the source",
            Duration::from_secs(90),
            || same_rows(&t, &src_db, &tgt_db),
        )
        .await;

        // Stop: the execution ends through MarkStopped.
        repo.update_flags(&id, |f| f.stop_requested = true)
            .await
            .unwrap();
        let info = wait_for_end(&sfn, &execution, Duration::from_secs(120)).await;
        assert_eq!(
            info.status,
            "SUCCEEDED",
            "{info:?}; invocations {:?}",
            lab.invocations.lock().unwrap()
        );
        assert_eq!(state(&repo, &id).await, Some(TaskState::Stopped));
        let states = sfn.entered_states(&execution).await.unwrap();
        for s in [
            "Incremental",
            "Switch",
            "ReverseApply",
            "MarkStopped",
            "Stopped",
        ] {
            assert!(
                states.iter().any(|x| x == s),
                "state {s} not entered: {states:?}"
            );
        }
        states
    } else {
        // No reverse link: the switch completes the task and ends the execution.
        let info = wait_for_end(&sfn, &execution, Duration::from_secs(180)).await;
        assert_eq!(
            info.status,
            "SUCCEEDED",
            "{info:?}; invocations {:?}",
            lab.invocations.lock().unwrap()
        );
        assert_eq!(state(&repo, &id).await, Some(TaskState::Completed));
        assert!(
            same_rows(&t, &src_db, &tgt_db).await,
            "the target equals the source after the switch"
        );
        let states = sfn.entered_states(&execution).await.unwrap();
        for s in ["Incremental", "Switch"] {
            assert!(
                states.iter().any(|x| x == s),
                "state {s} not entered: {states:?}"
            );
        }
        states
    };
    eprintln!(
        "cloud lifecycle: {} states entered, {} Lambda invocations",
        states.len(),
        lab.stages_invoked().len()
    );

    // Release (as `ferry release --cloud` does): Ferry's objects and records go.
    let env = StageEnv::new(lab.store.clone(), lab.secrets.clone(), "test-release");
    let far = std::time::Instant::now() + Duration::from_secs(120);
    let out = ferry_stages::invoke(
        &env,
        "cleanup",
        json!({"task_id": id, "action": "release"}),
        far,
    )
    .await
    .unwrap();
    assert_eq!(out["released"], true, "{out}");
    assert!(repo.get_task(&id).await.unwrap().is_none());

    for db in [&src_db, &meta] {
        let _ = src
            .query_drop(format!(
                "REVOKE ALL PRIVILEGES ON {}.* FROM '{SRC_USER}'@'%'",
                quote_ident(db)
            ))
            .await;
        drop_db(&mut src, db).await;
    }
    drop_db(&mut tgt, &tgt_db).await;
    drop_db(&mut tgt, &meta).await;
}
