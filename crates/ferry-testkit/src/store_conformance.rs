//! Conformance tests every [`ItemStore`] adapter must pass (SQLite here,
//! DynamoDB later), so the repository's leases and fencing hold on each.
//!
//! Invariant checked: conditional writes are atomic (`Cond::Absent` and
//! `Cond::Version` hold or the write does nothing), `query` returns exactly the
//! items whose `sk` starts with the prefix, ordered by `sk`; on top of that the
//! [`Repo`] guarantees hold: a chunk is never claimed by two workers, a worker
//! whose lease was taken over cannot finish the chunk, an older checkpoint
//! epoch cannot overwrite a newer one, concurrent flag updates are not lost, and
//! the same lease rules hold on a stage's own records (`Repo::claim_lease` ..).
//!
//! Usage, in an adapter's tests: `store_conformance::run_all(|| MyStore::new(..)).await`.
//! `make` must return an empty store (or one no other test writes task ids
//! starting with `conf-` to).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::{CheckpointRecord, ChunkRecord, ChunkState, Direction, KeyValue};
use ferry_core::position::BinlogPosition;
use ferry_core::store::{Cond, ItemStore, Leased, Repo};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Run every conformance check, each on a fresh store from `make`.
pub async fn run_all<S: ItemStore>(make: impl Fn() -> S) {
    cond_semantics(make()).await;
    query_prefix_and_order(make()).await;
    claim_is_exclusive(make(), 8, 40).await;
    finish_is_fenced_after_lease_loss(make()).await;
    checkpoint_epoch_fencing(make()).await;
    flags_updates_are_not_lost(make()).await;
    samples_are_ordered_bounded_and_not_lost(make()).await;
    record_leases_are_exclusive_and_fenced(make()).await;
}

/// How many stores [`run_all`] asks `make` for.
pub const STORES_NEEDED: usize = 8;

/// `Cond::Any`, `Cond::Absent` and `Cond::Version`, and versions growing by one.
pub async fn cond_semantics<S: ItemStore>(s: S) {
    let (pk, sk) = ("conf-cond", "item");
    assert_eq!(
        s.get(pk, sk).await.unwrap(),
        None,
        "a fresh store has no item"
    );
    assert_eq!(
        s.put(pk, sk, &json!({"n": 1}), Cond::Absent).await.unwrap(),
        Some(1),
        "Absent on a new key"
    );
    assert_eq!(
        s.put(pk, sk, &json!({"n": 9}), Cond::Absent).await.unwrap(),
        None,
        "Absent on an existing key"
    );
    assert_eq!(
        s.put(pk, sk, &json!({"n": 2}), Cond::Version(1))
            .await
            .unwrap(),
        Some(2),
        "Version at the version"
    );
    assert_eq!(
        s.put(pk, sk, &json!({"n": 9}), Cond::Version(1))
            .await
            .unwrap(),
        None,
        "Version at an old version"
    );
    assert_eq!(
        s.put(pk, sk, &json!({"n": 9}), Cond::Version(7))
            .await
            .unwrap(),
        None,
        "Version ahead"
    );
    let item = s.get(pk, sk).await.unwrap().expect("item written");
    assert_eq!(
        (item.version, item.data.clone()),
        (2, json!({"n": 2})),
        "a refused write changes nothing"
    );
    assert_eq!((item.pk.as_str(), item.sk.as_str()), (pk, sk));
    assert_eq!(
        s.put(pk, sk, &json!({"n": 3}), Cond::Any).await.unwrap(),
        Some(3),
        "Any overwrites"
    );
    assert_eq!(
        s.put(pk, "other", &json!(1), Cond::Version(1))
            .await
            .unwrap(),
        None,
        "Version on a missing key"
    );
    assert_eq!(
        s.get(pk, "other").await.unwrap(),
        None,
        "a refused write creates nothing"
    );
    assert_eq!(
        s.put(pk, "any-new", &json!([1, "a"]), Cond::Any)
            .await
            .unwrap(),
        Some(1),
        "Any on a new key"
    );
    s.delete(pk, sk).await.unwrap();
    assert_eq!(s.get(pk, sk).await.unwrap(), None, "deleted");
    s.delete(pk, sk).await.unwrap();
    assert!(
        s.put(pk, sk, &json!({"n": 4}), Cond::Absent)
            .await
            .unwrap()
            .is_some(),
        "Absent after delete"
    );
    let nested =
        json!({"s": "emoji 😀 and \"quotes\"", "big": u64::MAX, "neg": -5, "null": null, "f": 1.5});
    s.put(pk, "nested", &nested, Cond::Any).await.unwrap();
    assert_eq!(
        s.get(pk, "nested").await.unwrap().unwrap().data,
        nested,
        "JSON round-trips exactly"
    );
}

/// `query` returns the prefix's items of one pk, ordered by sk, with no wildcard matching.
pub async fn query_prefix_and_order<S: ItemStore>(s: S) {
    let pk = "conf-query";
    for sk in [
        "chunk#0010",
        "chunk#0002",
        "meta",
        "chunk",
        "chunk#0001",
        "table#a",
        "x_1",
        "xy1",
        "CHUNK#0003",
    ] {
        s.put(pk, sk, &json!({"sk": sk}), Cond::Any).await.unwrap();
    }
    s.put("conf-query-other", "chunk#0000", &json!({}), Cond::Any)
        .await
        .unwrap();
    let sks =
        |items: Vec<ferry_core::store::Item>| items.into_iter().map(|i| i.sk).collect::<Vec<_>>();
    assert_eq!(
        sks(s.query(pk, "chunk#").await.unwrap()),
        ["chunk#0001", "chunk#0002", "chunk#0010"],
        "prefix query: exact prefix (case-sensitive), ordered, this pk only"
    );
    assert_eq!(
        sks(s.query(pk, "x_").await.unwrap()),
        ["x_1"],
        "`_` is not a wildcard"
    );
    assert_eq!(
        sks(s.query(pk, "nothing#").await.unwrap()),
        Vec::<String>::new()
    );
    let all = s.query(pk, "").await.unwrap();
    assert_eq!(all.len(), 9, "empty prefix: every item of the pk");
    let mut sorted = sks(all.clone());
    sorted.sort();
    assert_eq!(sks(all.clone()), sorted, "ordered by sk in byte order");
    assert!(all
        .iter()
        .all(|i| i.pk == pk && i.version == 1 && i.data == json!({"sk": i.sk})));
}

fn chunk(i: usize) -> ChunkRecord {
    ChunkRecord {
        chunk_id: format!("0000-{i:06}"),
        source_db: "db".into(),
        source_table: "t".into(),
        lower: Some(vec![KeyValue::Int(i as i64 * 10)]),
        upper: Some(vec![KeyValue::Int(i as i64 * 10 + 10)]),
        state: ChunkState::Pending,
        owner: None,
        lease_until_ms: 0,
        attempts: 0,
        rows: 0,
        bytes: 0,
        last_error: None,
    }
}

/// `workers` claimers race for `chunks` chunks: each is claimed exactly once, all are claimed.
pub async fn claim_is_exclusive<S: ItemStore>(s: S, workers: usize, chunks: usize) {
    let task = "conf-claim";
    let repo = Arc::new(Repo::new(s));
    repo.put_chunks(task, &(0..chunks).map(chunk).collect::<Vec<_>>())
        .await
        .unwrap();
    let mut handles = Vec::new();
    for w in 0..workers {
        let repo = Arc::clone(&repo);
        handles.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut won = Vec::new();
            while let Some(c) = repo.claim_chunk(task, &owner, 60_000).await.unwrap() {
                assert_eq!(c.owner.as_deref(), Some(owner.as_str()));
                repo.finish_chunk(task, &c.chunk_id, &owner, 1, 2)
                    .await
                    .unwrap();
                won.push(c.chunk_id);
            }
            won
        }));
    }
    let mut seen = BTreeSet::new();
    for h in handles {
        for id in h.await.expect("claimer task") {
            assert!(seen.insert(id.clone()), "chunk {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), chunks, "every chunk claimed");
    let sum = repo.chunk_summary(task).await.unwrap();
    assert_eq!(
        (sum.total, sum.done, sum.rows, sum.bytes),
        (
            chunks as u64,
            chunks as u64,
            chunks as u64,
            2 * chunks as u64
        )
    );
}

/// A worker whose lease expired and was taken over can neither finish nor fail the chunk.
pub async fn finish_is_fenced_after_lease_loss<S: ItemStore>(s: S) {
    let task = "conf-fence";
    let repo = Repo::new(s);
    repo.put_chunks(task, &[chunk(1)]).await.unwrap();
    let a = repo
        .claim_chunk(task, "a", 0)
        .await
        .unwrap()
        .expect("a claims the chunk");
    assert_eq!(a.attempts, 1);
    // The lease ends at the claim's millisecond: wait (bounded) until b may take it over.
    let deadline = Instant::now() + Duration::from_secs(5);
    let b = loop {
        if let Some(c) = repo.claim_chunk(task, "b", 60_000).await.unwrap() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "an expired lease was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!((b.owner.as_deref(), b.attempts), (Some("b"), 2));
    assert_eq!(
        repo.claim_chunk(task, "c", 60_000).await.unwrap(),
        None,
        "a live lease is not taken"
    );
    let e = repo
        .finish_chunk(task, &a.chunk_id, "a", 5, 5)
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Ferry.Fenced", "{e}");
    let e = repo
        .fail_chunk(task, &a.chunk_id, "a", "boom", 5)
        .await
        .unwrap_err();
    assert_eq!(e.name(), "Ferry.Fenced", "{e}");
    repo.renew_lease(task, &b.chunk_id, "b", 60_000)
        .await
        .unwrap();
    repo.finish_chunk(task, &b.chunk_id, "b", 7, 70)
        .await
        .unwrap();
    let e = repo
        .finish_chunk(task, &b.chunk_id, "b", 7, 70)
        .await
        .unwrap_err();
    assert_eq!(
        e.name(),
        "Ferry.Fenced",
        "a done chunk cannot be finished again: {e}"
    );
    let done = repo.chunks(task).await.unwrap();
    assert_eq!(
        (done[0].state, done[0].rows, done[0].owner.clone()),
        (ChunkState::Done, 7, None)
    );
}

fn ckpt(epoch: u64, pos: u64) -> CheckpointRecord {
    CheckpointRecord {
        direction: Direction::Forward,
        position: BinlogPosition::new("bin.000001", pos),
        epoch,
        updated_ms: 0,
        lag_ms: None,
        applied_rows: pos,
    }
}

/// An applier with an older epoch cannot overwrite a newer epoch's checkpoint.
pub async fn checkpoint_epoch_fencing<S: ItemStore>(s: S) {
    let task = "conf-ckpt";
    let repo = Repo::new(s);
    assert_eq!(
        repo.checkpoint(task, Direction::Forward).await.unwrap(),
        None
    );
    repo.put_checkpoint(task, &ckpt(2, 100)).await.unwrap();
    let e = repo.put_checkpoint(task, &ckpt(1, 500)).await.unwrap_err();
    assert_eq!(e.name(), "Ferry.Fenced", "{e}");
    assert_eq!(
        repo.checkpoint(task, Direction::Forward).await.unwrap(),
        Some(ckpt(2, 100))
    );
    repo.put_checkpoint(task, &ckpt(2, 200)).await.unwrap();
    repo.put_checkpoint(task, &ckpt(3, 300)).await.unwrap();
    assert_eq!(
        repo.checkpoint(task, Direction::Forward).await.unwrap(),
        Some(ckpt(3, 300))
    );
    assert_eq!(
        repo.checkpoint(task, Direction::Reverse).await.unwrap(),
        None,
        "directions are separate"
    );
    repo.delete_checkpoint(task, Direction::Forward)
        .await
        .unwrap();
    assert_eq!(
        repo.checkpoint(task, Direction::Forward).await.unwrap(),
        None
    );
}

/// Flags default to off; concurrent updates of different flags both land.
pub async fn flags_updates_are_not_lost<S: ItemStore>(s: S) {
    let task = "conf-flags";
    let repo = Arc::new(Repo::new(s));
    let f = repo.flags(task).await.unwrap();
    assert!(!f.switch_requested && !f.stop_requested);
    let r1 = Arc::clone(&repo);
    let r2 = Arc::clone(&repo);
    let (a, b) = tokio::join!(
        tokio::spawn(async move { r1.update_flags(task, |f| f.switch_requested = true).await }),
        tokio::spawn(async move { r2.update_flags(task, |f| f.stop_requested = true).await }),
    );
    a.expect("flag task").unwrap();
    b.expect("flag task").unwrap();
    let f = repo.flags(task).await.unwrap();
    assert!(
        f.switch_requested && f.stop_requested,
        "a concurrent flag update was lost: {f:?}"
    );
    repo.update_flags(task, |f| f.stop_requested = false)
        .await
        .unwrap();
    let f = repo.flags(task).await.unwrap();
    assert!(f.switch_requested && !f.stop_requested);
}

/// Samples come back in time order, concurrent appends are all kept, series
/// are separate, and a series never holds more than `MAX_SAMPLES`.
pub async fn samples_are_ordered_bounded_and_not_lost<S: ItemStore>(s: S) {
    use ferry_core::samples::{Sample, Series, MAX_SAMPLES};
    let task = "conf-samples";
    let repo = Arc::new(Repo::new(s));
    assert!(repo.samples(task, Series::Copy).await.unwrap().is_empty());
    let mut handles = Vec::new();
    for w in 0..4u64 {
        let r = Arc::clone(&repo);
        handles.push(tokio::spawn(async move {
            for i in 0..10u64 {
                let sample = Sample {
                    at_ms: 1_000 + i * 10 + w,
                    rows: 1,
                    lag_ms: Some(w),
                };
                r.add_sample(task, Series::Forward, sample).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.expect("sample writer");
    }
    let got = repo.samples(task, Series::Forward).await.unwrap();
    assert_eq!(got.len(), 40, "a concurrent sample was lost");
    assert!(
        got.windows(2).all(|w| w[0].at_ms <= w[1].at_ms),
        "samples out of order"
    );
    assert!(repo
        .samples(task, Series::Reverse)
        .await
        .unwrap()
        .is_empty());
    // An older sample arriving late lands in its place.
    repo.add_sample(
        task,
        Series::Copy,
        Sample {
            at_ms: 50,
            rows: 5,
            lag_ms: None,
        },
    )
    .await
    .unwrap();
    repo.add_sample(
        task,
        Series::Copy,
        Sample {
            at_ms: 10,
            rows: 7,
            lag_ms: None,
        },
    )
    .await
    .unwrap();
    let copy = repo.samples(task, Series::Copy).await.unwrap();
    assert_eq!(
        copy.iter().map(|s| s.at_ms).collect::<Vec<_>>(),
        vec![10, 50]
    );
    // Bounded: the oldest go first.
    for i in 0..(MAX_SAMPLES as u64 + 25) {
        repo.add_sample(
            task,
            Series::Reverse,
            Sample {
                at_ms: 10_000 + i,
                rows: i,
                lag_ms: None,
            },
        )
        .await
        .unwrap();
    }
    let rev = repo.samples(task, Series::Reverse).await.unwrap();
    assert_eq!(rev.len(), MAX_SAMPLES, "the series is not bounded");
    assert_eq!(
        rev[0].at_ms, 10_025,
        "the oldest samples were not the ones dropped"
    );
}

/// A stage's own record under a lease, as a verify chunk is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    round: u32,
    done: bool,
    holder: Option<String>,
    until_ms: u64,
    attempts: u32,
}

impl Leased for Job {
    fn holder(&self) -> Option<&str> {
        self.holder.as_deref()
    }
    fn lease_until_ms(&self) -> u64 {
        self.until_ms
    }
    fn set_lease(&mut self, holder: Option<String>, until_ms: u64) {
        self.holder = holder;
        self.until_ms = until_ms;
    }
    fn finished(&self) -> bool {
        self.done
    }
}

/// Leases on a stage's own records: of several workers claiming one record at
/// once exactly one wins; a live lease is not taken, an expired one is taken
/// over (one more attempt) and its former holder can neither extend, give back
/// nor finish it; a record given back is free from the time given; a finished
/// record is not claimed again in its round, and a new round starts afresh.
pub async fn record_leases_are_exclusive_and_fenced<S: ItemStore>(s: S) {
    let (task, sk) = ("conf-lease", "job#1");
    let repo = Arc::new(Repo::new(s));
    // Afresh in `round`, or one attempt more when taken over.
    let start = |round: u32| {
        move |prev: Option<Job>| Job {
            round,
            done: false,
            holder: None,
            until_ms: 0,
            attempts: prev.map_or(1, |j| j.attempts + 1),
        }
    };
    let round = |r: u32| move |j: &Job| j.round == r;

    let mut handles = Vec::new();
    for w in 0..6 {
        let repo = Arc::clone(&repo);
        handles.push(tokio::spawn(async move {
            let me = format!("w{w}");
            repo.claim_lease(task, sk, &me, 60_000, round(1), start(1))
                .await
                .unwrap()
                .map(|c| (me, c))
        }));
    }
    let mut winners = Vec::new();
    for h in handles {
        winners.extend(h.await.expect("claimer task"));
    }
    assert_eq!(winners.len(), 1, "one record, one holder: {winners:?}");
    let (first, claimed) = winners.remove(0);
    assert_eq!(claimed.before, None);
    assert_eq!(
        (claimed.record.holder.as_deref(), claimed.record.attempts),
        (Some(first.as_str()), 1)
    );
    assert!(repo
        .extend_lease(task, sk, &first, 0, round(1))
        .await
        .unwrap());

    // The lease now ends at once: wait (bounded) until another worker takes it over.
    let deadline = Instant::now() + Duration::from_secs(5);
    let taken = loop {
        if let Some(c) = repo
            .claim_lease(task, sk, "late", 60_000, round(1), start(1))
            .await
            .unwrap()
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "an expired lease was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(
        (taken.record.holder.as_deref(), taken.record.attempts),
        (Some("late"), 2)
    );
    assert_eq!(
        taken.before.and_then(|b| b.holder),
        Some(first.clone()),
        "the claim tells what the earlier holder left"
    );
    assert!(
        repo.claim_lease(task, sk, "other", 60_000, round(1), start(1))
            .await
            .unwrap()
            .is_none(),
        "a live lease is not taken"
    );
    assert!(!repo
        .extend_lease(task, sk, &first, 60_000, round(1))
        .await
        .unwrap());
    assert!(!repo
        .give_back_lease(task, sk, &first, 0, round(1))
        .await
        .unwrap());
    assert!(
        !repo
            .finish_lease(task, sk, &first, round(1), |j: &mut Job| j.done = true)
            .await
            .unwrap(),
        "a former holder cannot finish"
    );
    assert!(
        !repo
            .give_back_lease(task, sk, "late", 0, |j: &Job| j.attempts < 2)
            .await
            .unwrap(),
        "the caller's condition holds the give-back back"
    );

    // Given back, free again only from the time given.
    let later = ferry_core::store::now_ms() + 60_000;
    assert!(repo
        .give_back_lease(task, sk, "late", later, round(1))
        .await
        .unwrap());
    assert!(
        repo.claim_lease(task, sk, "other", 60_000, round(1), start(1))
            .await
            .unwrap()
            .is_none(),
        "a record given back for later is not free yet"
    );
    assert!(
        repo.give_back_lease(task, sk, "late", 0, round(1))
            .await
            .is_ok_and(|given| !given),
        "no longer the holder once given back"
    );

    repo.swap_record(task, sk, |j: Option<Job>| {
        j.map(|j| Job {
            holder: Some("late".into()),
            until_ms: later,
            ..j
        })
    })
    .await
    .unwrap();
    assert!(repo
        .finish_lease(task, sk, "late", round(1), |j: &mut Job| j.done = true)
        .await
        .unwrap());
    let done: Job = repo.get_record(task, sk).await.unwrap().expect("the job");
    assert_eq!((done.done, done.holder, done.until_ms), (true, None, 0));
    assert!(
        repo.claim_lease(task, sk, "other", 60_000, round(1), start(1))
            .await
            .unwrap()
            .is_none(),
        "a finished record is not claimed again in its round"
    );
    let next = repo
        .claim_lease(task, sk, "other", 60_000, round(2), start(2))
        .await
        .unwrap()
        .expect("a new round claims afresh");
    assert_eq!(
        (next.record.round, next.record.attempts, next.record.done),
        (2, 1, false)
    );
    assert_eq!(next.before.map(|b| b.done), Some(true));
}
