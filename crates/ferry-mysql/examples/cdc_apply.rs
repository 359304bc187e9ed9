//! Run one replication link from the command line (used by scripts/bench/cdc,
//! and killable as a child process): reads the source's binlog from a position
//! and applies every table of one database to the same database on the target,
//! until caught up and idle (or `--seconds`). Prints one JSON line: applied
//! rows, elapsed ms, ms until its last changes committed, rows/s, lag percentiles.
//!
//! ```text
//! [CDC_APPLY_TARGET_ENGINE=oceanbase] [CDC_APPLY_REPLAY=1] cdc_apply SRC_HOST SRC_PORT TGT_HOST TGT_PORT USER PASSWORD DB FILE POS WORKERS [SECONDS] [IDLE_MS]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_core::model::Direction;
use ferry_core::position::BinlogPosition;
use ferry_core::secret::{DbSecret, Redacted};
use ferry_mysql::apply::{run_link, Link, LinkConfig, TargetName};
use ferry_mysql::Endpoint;

fn endpoint(
    role: &str,
    engine: &str,
    host: &str,
    port: &str,
    user: &str,
    password: &str,
) -> Endpoint {
    let secret = DbSecret {
        engine: engine.into(),
        host: host.into(),
        port: port.parse().unwrap_or(3306),
        username: user.into(),
        password: Redacted::new(password.into()),
        dbname: None,
        tls: None,
    };
    Endpoint::new(role, &format!("bench-{role}"), secret)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 11 {
        eprintln!("usage: cdc_apply SRC_HOST SRC_PORT TGT_HOST TGT_PORT USER PASSWORD DB FILE POS WORKERS [SECONDS] [IDLE_MS]");
        std::process::exit(2);
    }
    let target_engine =
        std::env::var("CDC_APPLY_TARGET_ENGINE").unwrap_or_else(|_| "mariadb".into());
    let source = endpoint("source", "mariadb", &a[1], &a[2], &a[5], &a[6]);
    let target = endpoint("target", &target_engine, &a[3], &a[4], &a[5], &a[6]);
    let db = a[7].clone();
    let start = BinlogPosition::new(a[8].clone(), a[9].parse().unwrap_or(4));
    let workers: u32 = a[10].parse().unwrap_or(4);
    let seconds: u64 = a.get(11).and_then(|s| s.parse().ok()).unwrap_or(3600);
    let idle_ms: u64 = a.get(12).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let mapper_db = db.clone();
    let mapper = Arc::new(move |d: &str, t: &str| {
        (d == mapper_db).then(|| TargetName {
            db: d.to_string(),
            table: t.to_string(),
            filter: None,
        })
    });
    let link = Link {
        meta_schema: "ferry_meta".into(),
        task_id: format!("bench-{}", std::process::id()),
        direction: Direction::Forward,
        epoch: 1,
        incarnation: None,
    };
    let mut cfg = LinkConfig::new(
        link,
        start.clone(),
        mapper,
        Instant::now() + Duration::from_secs(seconds),
    );
    cfg.workers = workers;
    // CDC_APPLY_REPLAY=1: every change idempotent, so the same binlog range can be
    // applied again and again to one target (alternating builds in a lab).
    cfg.idempotent_until = match std::env::var("CDC_APPLY_REPLAY").as_deref() {
        Ok("1") => None,
        _ => Some(start),
    };
    // Text statements into OceanBase, as the incremental-apply stage sends them there.
    cfg.prepared = target_engine != "oceanbase";
    cfg.idle = Duration::from_millis(idle_ms);
    cfg.heartbeat_every = Some(Duration::from_millis(200));
    let t0 = Instant::now();
    match run_link(&source, &target, cfg).await {
        Ok(r) => {
            let mut lags = r.lag_samples.clone();
            lags.sort_unstable();
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "{{\"applied\":{},\"elapsed_ms\":{},\"applied_ms\":{},\"rows_per_s\":{:.0},\"caught_up\":{},\"lag_p50_ms\":{},\"lag_p99_ms\":{},\"lag_max_ms\":{},\"lag_samples\":{}}}",
                r.applied,
                (secs * 1000.0) as u64,
                r.applied_ms,
                r.applied as f64 / secs,
                r.caught_up,
                percentile(&lags, 0.5),
                percentile(&lags, 0.99),
                lags.last().copied().unwrap_or(0),
                lags.len()
            );
        }
        Err(e) => {
            eprintln!("cdc_apply: {} {}", e.name(), e.message());
            std::process::exit(1);
        }
    }
}
