//! The SQLite store against the store conformance suite, on one connection and
//! on several connections to one file (as several processes would use it).

use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_core::store::{Cond, ItemStore};
use ferry_local::SqliteStore;
use ferry_testkit::store_conformance;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    store_conformance::run_all(|| {
        let file = dir
            .path()
            .join(format!("s{}.db", n.fetch_add(1, Ordering::SeqCst)));
        SqliteStore::open(&file).unwrap()
    })
    .await;
}

/// Each claimer gets its own connection to the same file: the conditional write must hold
/// across connections (the multi-process case), not only behind one in-process mutex.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_are_exclusive_across_connections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.db");
    // The first store creates the file; the others open it as other processes would.
    let first = SqliteStore::open(&file).unwrap();
    let stores: Vec<SqliteStore> = (0..8).map(|_| SqliteStore::open(&file).unwrap()).collect();
    first.put("p", "s", &json!(0), Cond::Absent).await.unwrap();
    let mut handles = Vec::new();
    for s in stores {
        handles.push(tokio::spawn(async move {
            let mut wins = 0u64;
            for _ in 0..25 {
                loop {
                    let cur = s.get("p", "s").await.unwrap().unwrap();
                    let next = json!(cur.data.as_u64().unwrap() + 1);
                    if s.put("p", "s", &next, Cond::Version(cur.version))
                        .await
                        .unwrap()
                        .is_some()
                    {
                        wins += 1;
                        break;
                    }
                }
            }
            wins
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    let item = first.get("p", "s").await.unwrap().unwrap();
    assert_eq!(total, 200);
    assert_eq!(
        item.data,
        json!(200),
        "a lost update: the counter must equal the successful writes"
    );
    assert_eq!(item.version, 201);
}

#[tokio::test]
async fn open_dir_creates_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/b/.ferry");
    let s = SqliteStore::open_dir(&state).unwrap();
    assert_eq!(s.path(), state.join("ferry.db"));
    s.put("p", "s", &json!({"x": 1}), Cond::Any).await.unwrap();
    // A second open (another process) sees the write.
    let again = SqliteStore::open_dir(&state).unwrap();
    assert_eq!(
        again.get("p", "s").await.unwrap().unwrap().data,
        json!({"x": 1})
    );
}

#[tokio::test]
async fn an_unwritable_place_is_a_store_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let e = SqliteStore::open_dir(&file.join("state")).unwrap_err();
    assert_eq!(e.name(), "Ferry.Store");
    assert!(e.message().contains("not-a-dir"), "{e}");
}

/// `claim_task` takes the lock, and resets what an earlier run left: running chunks back to
/// pending, failed chunks to pending with a fresh attempt budget; done chunks stay done.
#[tokio::test]
async fn claim_task_resumes_running_and_failed_chunks() {
    use ferry_core::model::{ChunkRecord, ChunkState};
    use ferry_core::store::Repo;

    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::new(SqliteStore::open_dir(dir.path()).unwrap());
    let chunk = |i: u32| ChunkRecord {
        chunk_id: format!("0000-{i:06}"),
        source_db: "db".into(),
        source_table: "t".into(),
        lower: None,
        upper: None,
        state: ChunkState::Pending,
        owner: None,
        lease_until_ms: 0,
        attempts: 0,
        rows: 0,
        bytes: 0,
        last_error: None,
    };
    repo.put_chunks("t1", &[chunk(1), chunk(2), chunk(3)])
        .await
        .unwrap();
    let a = repo
        .claim_chunk("t1", "dead", 600_000)
        .await
        .unwrap()
        .unwrap();
    repo.finish_chunk("t1", &a.chunk_id, "dead", 1, 1)
        .await
        .unwrap();
    let b = repo
        .claim_chunk("t1", "dead", 600_000)
        .await
        .unwrap()
        .unwrap();
    repo.fail_chunk("t1", &b.chunk_id, "dead", "boom", 1)
        .await
        .unwrap();
    repo.claim_chunk("t1", "dead", 600_000)
        .await
        .unwrap()
        .unwrap();
    let before = repo.chunk_summary("t1").await.unwrap();
    assert_eq!((before.done, before.failed, before.running), (1, 1, 1));

    let (lock, reset) = ferry_local::claim_task(dir.path(), &repo, "t1")
        .await
        .unwrap();
    assert_eq!(reset, 2);
    let after = repo.chunk_summary("t1").await.unwrap();
    assert_eq!(
        (after.done, after.pending, after.failed, after.running),
        (1, 2, 0, 0)
    );
    let e = ferry_local::claim_task(dir.path(), &repo, "t1")
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Ferry.Fenced");
    drop(lock);
    ferry_local::claim_task(dir.path(), &repo, "t1")
        .await
        .unwrap();
}
