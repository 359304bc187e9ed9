//! Applying binlog row changes to the target, exactly once, in parallel.
//!
//! # Invariant
//!
//! For a link (task, direction), the target holds one checkpoint row per
//! apply worker in `<meta_schema>.checkpoints`. Worker *k*'s row says: every
//! change of *k*'s partition in a source transaction that starts before
//! `(file, pos)` is applied, and none after it. The row is updated in the
//! same target transaction as the changes it covers, so a crash anywhere
//! (between statements, before COMMIT, after COMMIT but before anything else
//! learns of it) leaves data and checkpoint in agreement: a resumed run reads
//! from the lowest worker checkpoint and each worker skips the transactions
//! its own checkpoint already covers. Nothing is lost, nothing is applied twice.
//!
//! The checkpoint update is conditional on the link's epoch
//! (`... WHERE epoch <= ?`): an applier whose epoch was superseded finds no
//! row to update, rolls back, and stops with `Ferry.Fenced`.
//!
//! Partitioning: a change goes to worker `hash(table, key) % workers`, so the
//! changes to one row keep their order. Tables where that is not enough (a
//! second unique key, or a text key whose collation can make two byte strings
//! one row) go whole to one worker, in binlog order. A source transaction is
//! never split across two checkpoints: groups of whole transactions commit
//! together. DDL is a barrier: every worker commits up to the statement, the
//! statement runs, then every checkpoint moves past it.
//!
//! Before the end of the full copy (`idempotent_until`) changes are applied
//! idempotently (insert and update become upserts of the after image, delete
//! is by key); after it an insert is a plain INSERT, so a change applied twice
//! would fail loudly rather than pass unnoticed.
//!
//! Files: `checkpoint.rs` (the checkpoint rows, their epoch fencing and
//! incarnations), `partitioning.rs` (where a change goes), `statements.rs`
//! (SQL literals and statements), `worker.rs` (a worker's buffer and
//! `Worker::commit`: a batch committed with its checkpoint), `pipeline.rs`
//! (`run_link`, `Pipeline::commit_group`, DDL barriers), `failpoints.rs`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
#[cfg(feature = "failpoints")]
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_core::position::BinlogPosition;
use ferry_core::store::now_ms;
use ferry_core::task::Dialect;
use ferry_core::FerryError;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::binlog::ddl::{self, DdlKind};
use crate::binlog::{
    server_id_for, BinlogEvent, BinlogReader, ColumnInfo, LiteralKind, ReaderOptions, RowChange,
    RowOp, TableFilter, TableInfo,
};
use crate::conn::{classify, qualified, quote_ident, Endpoint};
use crate::dialect::TargetContext;
use crate::dirty::{ChangeTracker, ChunkKeys, ChunkMap, MarkSink};
use crate::FastMap;

mod checkpoint;
mod failpoints;
mod partitioning;
mod pipeline;
mod statements;
mod worker;

pub use checkpoint::*;
pub use failpoints::*;
pub use partitioning::*;
pub use pipeline::*;
pub use statements::*;
pub use worker::*;

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::consts::ColumnType;

    fn col(name: &str, literal: LiteralKind) -> ColumnInfo {
        ColumnInfo {
            name: name.into(),
            ctype: ColumnType::MYSQL_TYPE_LONG,
            unsigned: false,
            literal,
            members: vec![],
            generated: false,
            pad_to: None,
            decode_from: None,
        }
    }

    fn table(parallel_safe: bool) -> TableInfo {
        TableInfo {
            db: "d".into(),
            table: "t".into(),
            columns: vec![
                col("id", LiteralKind::Plain),
                col("v", LiteralKind::Text),
                col("b", LiteralKind::Binary),
            ],
            key: vec![0],
            parallel_safe,
            names_from: crate::binlog::NamesFrom::Binlog,
        }
    }

    /// The statements' texts; each must be a text statement.
    fn texts(s: Vec<Stmt>) -> Vec<String> {
        s.into_iter()
            .map(|s| match s {
                Stmt::Text(t) => t,
                p => panic!("a prepared statement where text was due: {p:?}"),
            })
            .collect()
    }

    /// Many rows go as prepared blocks of a statement's sizes, largest first,
    /// in their order, the tail of fewer than `PREPARED_MIN_ROWS` as text;
    /// a few rows or large values stay text.
    #[test]
    fn rows_go_in_prepared_blocks_and_the_tail_as_text() {
        let mut t = table(true);
        t.columns.push(ColumnInfo {
            generated: true,
            ..col("g", LiteralKind::Plain)
        });
        let target = TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        };
        let rows: Vec<Vec<Value>> = (0..300)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::Bytes(b"v".to_vec()),
                    Value::NULL,
                    Value::Int(0),
                ]
            })
            .collect();
        let refs: Vec<&[Value]> = rows.iter().map(Vec::as_slice).collect();
        let s = insert_statements(&t, &target, &refs, true);
        let shape: Vec<(bool, usize)> = s
            .iter()
            .map(|s| match s {
                Stmt::Prepared { sql, params } => {
                    assert_eq!(params.len() % 3, 0, "3 written columns a row: {sql}");
                    assert_eq!(sql.matches('?').count(), params.len());
                    assert!(sql.starts_with("INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (?,?,?),"));
                    assert!(sql.ends_with(
                        "ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),`v`=VALUES(`v`),`b`=VALUES(`b`)"
                    ));
                    (true, params.len() / 3)
                }
                Stmt::Text(sql) => (false, sql.matches("),(").count() + 1),
            })
            .collect();
        assert_eq!(
            shape,
            vec![(true, 128), (true, 128), (true, 32), (true, 8), (false, 4)]
        );
        // The rows in order: the first block starts at row 0, the text holds the last four.
        let Stmt::Prepared { params, .. } = &s[0] else {
            unreachable!()
        };
        assert_eq!(
            params[..3],
            [Value::Int(0), Value::Bytes(b"v".to_vec()), Value::NULL]
        );
        assert!(s[4]
            .sql()
            .starts_with("INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (296,'v',NULL)"));
        // A plain insert has no update clause.
        let plain = insert_statements(&t, &target, &refs[..8], false);
        assert!(matches!(&plain[..], [Stmt::Prepared { sql, .. }] if !sql.contains("DUPLICATE")));

        let few = insert_statements(&t, &target, &refs[..PREPARED_MIN_ROWS - 1], true);
        assert!(matches!(&few[..], [Stmt::Text(_)]), "{few:?}");
        let big: Vec<Vec<Value>> = (0..16)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::Bytes(vec![b'x'; MAX_STATEMENT / 8]),
                    Value::NULL,
                    Value::NULL,
                ]
            })
            .collect();
        let big_refs: Vec<&[Value]> = big.iter().map(Vec::as_slice).collect();
        let large = insert_statements(&t, &target, &big_refs, true);
        assert!(
            large.iter().all(|s| matches!(s, Stmt::Text(_))),
            "large values stay text"
        );
        assert_eq!(
            large
                .iter()
                .map(|s| s.sql().matches("),(").count() + 1)
                .sum::<usize>(),
            16
        );
    }

    /// Text statements (into OceanBase) carry rows in blocks whose counts have
    /// at most four significant bits: every row once, in order, largest block
    /// first, few shapes in all.
    #[test]
    fn text_blocks_have_few_shapes_and_keep_every_row_in_order() {
        let sizes = |n: usize| -> Vec<usize> {
            let rows: Vec<usize> = (0..n).collect();
            let blocks: Vec<&[usize]> = text_blocks(&rows).collect();
            let flat: Vec<usize> = blocks.concat();
            assert_eq!(flat, rows, "every row once, in order ({n})");
            blocks.iter().map(|b| b.len()).collect()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(16), [16]);
        assert_eq!(sizes(17), [16, 1]);
        assert_eq!(sizes(450), [448, 2]);
        assert_eq!(sizes(511), [480, 30, 1]);
        assert_eq!(sizes(5000), [1920, 1920, 1152, 8]);
        let mut shapes = std::collections::BTreeSet::new();
        for n in 1..=MAX_ROWS_PER_STATEMENT {
            let s = sizes(n);
            assert!(s.windows(2).all(|w| w[0] >= w[1]), "{n}: {s:?}");
            assert!(s.len() <= 4, "{n}: {s:?}");
            for b in s {
                assert!(b >> b.trailing_zeros() < 16, "{n}: block {b}");
                shapes.insert(b);
            }
        }
        assert!(shapes.len() <= 80, "{} shapes", shapes.len());
    }

    /// Without prepared statements each kind of statement goes in those blocks.
    #[test]
    fn text_statements_of_a_buffer_go_in_blocks() {
        let t = Arc::new(table(true));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let mut b = Buffer::default();
        for id in 0..19 {
            b.push(Routed {
                table: t.clone(),
                target: target.clone(),
                prim: Prim::Put {
                    row: vec![Value::Int(id), Value::NULL, Value::NULL],
                    fresh: false,
                },
            });
        }
        for id in 100..117 {
            b.push(Routed {
                table: t.clone(),
                target: target.clone(),
                prim: Prim::Delete {
                    key: vec![Value::Int(id)],
                },
            });
        }
        let s = texts(b.take_statements(false));
        let rows = |s: &str| s.matches("),(").count() + 1;
        assert_eq!(s.len(), 4, "{s:?}");
        assert!(
            s[0].starts_with("DELETE")
                && s[0].ends_with(
                    "IN (100,101,102,103,104,105,106,107,108,109,110,111,112,113,114,115)"
                ),
            "{}",
            s[0]
        );
        assert!(s[1].ends_with("IN (116)"), "{}", s[1]);
        assert!(
            s[2].contains("VALUES (0,NULL,NULL),") && rows(&s[2]) == 18,
            "{}",
            s[2]
        );
        assert!(
            s[3].contains("VALUES (18,NULL,NULL) ON") && rows(&s[3]) == 1,
            "{}",
            s[3]
        );
        assert!(s[2..].iter().all(|s| s.contains("ON DUPLICATE KEY UPDATE")));
    }

    /// A FLOAT goes as a double that rounds back to it: its shortest decimal
    /// when that stays in range, else its exact widening.
    #[test]
    fn floats_are_written_as_doubles_that_round_back_to_them() {
        let c = col("f", LiteralKind::Plain);
        let text = |f: f32| {
            let mut s = String::new();
            push_literal(&mut s, &Value::Float(f), &c);
            s
        };
        assert_eq!(text(-9999.999), "-9.999999e3");
        assert_eq!(text(0.1), "1e-1");
        assert_eq!(text(f32::MAX), "3.4028234663852886e38");
        assert_eq!(text(f32::MIN_POSITIVE), "1.1754944e-38");
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            let f = f32::from_bits(rng.random::<u32>());
            if !f.is_finite() {
                continue;
            }
            let d: f64 = text(f).parse().expect("a number");
            assert_eq!((d as f32).to_bits(), f.to_bits(), "{f:e} as {}", text(f));
            assert!(d.abs() <= f64::from(f32::MAX), "{f:e}");
        }
    }

    #[test]
    fn literals_are_exact() {
        let c = col("x", LiteralKind::Text);
        let mut s = String::new();
        push_literal(&mut s, &Value::Bytes(b"it's \\".to_vec()), &c);
        push_literal(
            &mut s,
            &Value::Bytes(vec![0xff, 0]),
            &col("b", LiteralKind::Binary),
        );
        push_literal(&mut s, &Value::Date(2024, 1, 2, 3, 4, 5, 6), &c);
        push_literal(&mut s, &Value::Time(true, 1, 2, 3, 4, 5), &c);
        push_literal(&mut s, &Value::Double(-2.25e-300), &c);
        assert_eq!(
            s,
            "'it''s \\'X'ff00''2024-01-02 03:04:05.000006''-26:03:04.000005'-2.25e-300"
        );
    }

    /// Workers' checkpoints outlive a release: the streamed key hash must be
    /// the hash of the key's bytes, as the partition always was.
    #[test]
    fn the_streamed_key_hash_is_the_hash_of_the_key_bytes() {
        let keys: Vec<Vec<Value>> = vec![
            vec![Value::Int(7)],
            vec![Value::Int(-7), Value::UInt(u64::MAX)],
            vec![Value::Bytes(b"k\0ey".to_vec()), Value::NULL],
            vec![Value::Date(2024, 1, 2, 3, 4, 5, 6), Value::Double(1.5)],
            vec![],
        ];
        for key in keys {
            let h = 0xcbf2_9ce4_8422_2325;
            assert_eq!(fnv_key(&key, h), fnv(&key_bytes(&key), h), "{key:?}");
        }
        // And a known value, so a change to both at once shows too.
        let t = table(true);
        let target = TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        };
        let put = Prim::Put {
            row: vec![Value::Int(42), Value::NULL, Value::NULL],
            fresh: false,
        };
        let delete = Prim::Delete {
            key: vec![Value::Int(42)],
        };
        assert_eq!(
            partition(&t, &target, &put, 1_000_003),
            partition(&t, &target, &delete, 1_000_003)
        );
        assert_eq!(
            partition(&t, &target, &put, 1_000_003),
            128_225,
            "the hash of x.y key 42, as before"
        );
    }

    #[test]
    fn compaction_keeps_the_net_effect() {
        let t = Arc::new(table(true));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let row = |id: i64, v: &str| vec![Value::Int(id), Value::Bytes(v.into()), Value::NULL];
        let mut b = Buffer::default();
        let mut push = |prim| {
            b.push(Routed {
                table: t.clone(),
                target: target.clone(),
                prim,
            })
        };
        push(Prim::Put {
            row: row(1, "a"),
            fresh: true,
        });
        push(Prim::Put {
            row: row(1, "b"),
            fresh: false,
        });
        push(Prim::Put {
            row: row(2, "c"),
            fresh: true,
        });
        push(Prim::Delete {
            key: vec![Value::Int(2)],
        });
        push(Prim::Delete {
            key: vec![Value::Int(3)],
        });
        push(Prim::Put {
            row: row(4, "d"),
            fresh: false,
        });
        let s = texts(b.take_statements(true));
        assert_eq!(
            s,
            vec![
                "DELETE FROM `x`.`y` WHERE `id` IN (3)".to_string(),
                "INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (1,'b',NULL)".to_string(),
                "INSERT INTO `x`.`y` (`id`,`v`,`b`) VALUES (4,'d',NULL) ON DUPLICATE KEY UPDATE `id`=VALUES(`id`),`v`=VALUES(`v`),`b`=VALUES(`b`)".to_string(),
            ]
        );
    }

    #[test]
    fn unsafe_tables_keep_binlog_order() {
        let t = Arc::new(table(false));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let mut b = Buffer::default();
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Delete {
                key: vec![Value::Int(1)],
            },
        });
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Delete {
                key: vec![Value::Int(2)],
            },
        });
        b.push(Routed {
            table: t.clone(),
            target: target.clone(),
            prim: Prim::Put {
                row: vec![Value::Int(1), Value::NULL, Value::NULL],
                fresh: true,
            },
        });
        let s = texts(b.take_statements(true));
        assert_eq!(s.len(), 2);
        assert!(
            s[0].starts_with("DELETE") && s[0].ends_with("IN (1,2)"),
            "{s:?}"
        );
        assert!(
            s[1].starts_with("INSERT") && !s[1].contains("DUPLICATE"),
            "{s:?}"
        );
    }

    #[test]
    fn filter_statements_number_the_images_under_the_source_names() {
        let mut t = table(true);
        t.columns.push(ColumnInfo {
            ctype: ColumnType::MYSQL_TYPE_DATETIME2,
            ..col("at", LiteralKind::Plain)
        });
        t.columns.push(ColumnInfo {
            ctype: ColumnType::MYSQL_TYPE_NEWDECIMAL,
            ..col("amount", LiteralKind::Plain)
        });
        let a = vec![
            Value::Int(1),
            Value::Bytes(b"x'y".to_vec()),
            Value::Bytes(vec![0; 64]),
            Value::Date(2024, 5, 6, 7, 8, 9, 10),
            Value::Bytes(b"12.50".to_vec()),
        ];
        let b = vec![
            Value::Int(2),
            Value::NULL,
            Value::NULL,
            Value::NULL,
            Value::NULL,
        ];
        // Only the columns the filter names: `b` (a BLOB here) stays out.
        assert_eq!(
            filter_statements(&t, "Amount > 10 AND `at` > '2024-01-01' OR v = 'x''y'", &[(3, &a), (7, &b)]),
            vec![
                "SELECT `__ferry_row` FROM (SELECT 3 AS `__ferry_row`, 'x''y' AS `v`, \
                 CAST('2024-05-06 07:08:09.000010' AS DATETIME(6)) AS `at`, CAST('12.50' AS DECIMAL(65,30)) AS `amount` \
                 UNION ALL SELECT 7 AS `__ferry_row`, NULL AS `v`, NULL AS `at`, NULL AS `amount`) \
                 AS `__ferry_images` WHERE (Amount > 10 AND `at` > '2024-01-01' OR v = 'x''y')"
                    .to_string()
            ]
        );
        // Split by rows, and by bytes.
        let many: Vec<(usize, &[Value])> =
            (0..FILTER_ROWS + 1).map(|i| (i, a.as_slice())).collect();
        assert_eq!(filter_statements(&t, "v <> ''", &many).len(), 2);
        let big = vec![
            Value::Int(1),
            Value::Bytes(vec![b'v'; MAX_STATEMENT / 2]),
            Value::NULL,
            Value::NULL,
            Value::NULL,
        ];
        let two: Vec<(usize, &[Value])> = (0..3).map(|i| (i, big.as_slice())).collect();
        let out = filter_statements(&t, "v <> ''", &two);
        assert_eq!(
            out.len(),
            2,
            "a statement ends once it passes {MAX_STATEMENT} bytes"
        );
        assert!(out.iter().all(|q| q.ends_with("WHERE (v <> '')")));
    }

    #[test]
    fn a_put_outside_the_filter_deletes_its_key() {
        for parallel_safe in [true, false] {
            let t = Arc::new(table(parallel_safe));
            let target = Arc::new(TargetName {
                db: "x".into(),
                table: "y".into(),
                filter: Some("v = 'in'".into()),
            });
            let mut b = Buffer::default();
            for (id, v, fresh) in [(1, "in", false), (2, "out", false), (3, "out", true)] {
                b.push(Routed {
                    table: t.clone(),
                    target: target.clone(),
                    prim: Prim::Put {
                        row: vec![Value::Int(id), Value::Bytes(v.into()), Value::NULL],
                        fresh,
                    },
                });
            }
            let tb = &mut b.tables.items[0];
            assert_eq!(
                tb.puts().iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            tb.put_outside_filter(1);
            tb.put_outside_filter(2);
            let s = texts(b.take_statements(true));
            // Row 2 may be on the target from before: deleted. Row 3 was a fresh
            // insert: nothing to delete where the net effect is known.
            let deletes: Vec<&String> = s.iter().filter(|q| q.starts_with("DELETE")).collect();
            assert!(deletes.iter().any(|q| q.contains("(2")), "{s:?}");
            if parallel_safe {
                assert!(!deletes.iter().any(|q| q.contains('3')), "{s:?}");
            }
            let inserts: Vec<&String> = s.iter().filter(|q| q.starts_with("INSERT")).collect();
            assert_eq!(inserts.len(), 1, "{s:?}");
            assert!(inserts[0].contains("(1,'in',NULL)") && !inserts[0].contains("'out'"));
        }
    }

    #[test]
    fn failpoints_fire_on_the_nth_hit() {
        set_failpoint("unit.fp", Some((FailAction::Error, 2)));
        assert!(failpoint("unit.fp").is_ok());
        assert!(failpoint("unit.fp").is_err());
        assert!(failpoint("unit.fp").is_ok());
    }

    /// The reader may run ahead of a worker by the queue's room, no further,
    /// and learns at once when the worker is gone.
    #[tokio::test]
    async fn a_worker_queue_is_bounded_by_size_and_closes_with_its_worker() {
        let t = Arc::new(table(true));
        let target = Arc::new(TargetName {
            db: "x".into(),
            table: "y".into(),
            filter: None,
        });
        let rows = |bytes: usize| {
            WorkerMsg::Rows(vec![Routed {
                table: t.clone(),
                target: target.clone(),
                prim: Prim::Put {
                    row: vec![Value::Int(1), Value::Bytes(vec![b'x'; bytes]), Value::NULL],
                    fresh: false,
                },
            }])
        };
        let (tx, mut rx) = queue();
        // Small messages queue without waiting for the worker.
        for _ in 0..1_000 {
            tx.send(rows(100)).await.expect("room for small rows");
        }
        for _ in 0..1_000 {
            assert!(matches!(rx.recv().await, Some((WorkerMsg::Rows(_), _))));
        }
        // One message larger than the room takes all of it, and the next waits for it.
        tx.send(rows(QUEUE_BYTES * 2))
            .await
            .expect("an oversized message still goes");
        let tx = Arc::new(tx);
        let next = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(WorkerMsg::Rollback).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!next.is_finished(), "a full queue makes the reader wait");
        let (big, room) = rx.recv().await.expect("the big message");
        drop((big, room));
        let sent = tokio::time::timeout(Duration::from_secs(10), next).await;
        assert!(
            matches!(sent, Ok(Ok(true))),
            "room given back lets the reader on"
        );
        assert!(matches!(rx.recv().await, Some((WorkerMsg::Rollback, _))));
        // Fill it again; a worker that stops wakes the waiting reader with an error.
        tx.send(rows(QUEUE_BYTES)).await.expect("room again");
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(WorkerMsg::Rollback).await.is_err() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(rx);
        let closed = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(
            matches!(closed, Ok(Ok(true))),
            "a gone worker closes its queue"
        );
    }
}
