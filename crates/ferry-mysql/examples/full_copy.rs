//! Profiling harness for the chunk copy: plans one table's chunks and copies
//! them with N parallel workers through `copy::copy_chunk` (the code path of
//! the copy-chunk stage), or only reads them (`--read-only`), printing rows/s.
//!
//! ```text
//! cargo run --release -p ferry-mysql --example full_copy -- \
//!     SRC_URL TGT_URL DB TABLE [--workers N] [--chunk-rows N] [--batch-rows N] [--method load_data|insert] [--read-only]
//! ```
//! URLs: `mysql://user:password@127.0.0.1:PORT`. The target table must exist.

use std::sync::Arc;
use std::time::Instant;

use ferry_mysql::copy::{copy_chunk, CopyOptions, RateLimiter, WriteMethod};
use ferry_mysql::planner::{plan_chunks, range_predicate};
use ferry_mysql::schema::read_table;
use mysql_async::prelude::*;
use mysql_async::{Conn, Opts, Pool};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: full_copy SRC_URL TGT_URL DB TABLE [options]".into());
    }
    let (src_url, tgt_url, db, table) = (&args[0], &args[1], args[2].clone(), args[3].clone());
    let workers: usize = arg(&args, "--workers")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2);
    let chunk_rows: u64 = arg(&args, "--chunk-rows")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50_000);
    let batch_rows: usize = arg(&args, "--batch-rows")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1000);
    let method: WriteMethod = arg(&args, "--method")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_default();
    let read_only = args.iter().any(|a| a == "--read-only");
    let setup = |url: &str| -> Result<Opts, Box<dyn std::error::Error>> {
        Ok(mysql_async::OptsBuilder::from_opts(Opts::from_url(url)?)
            .setup(vec!["SET NAMES utf8mb4", "SET time_zone = '+00:00'"])
            .into())
    };
    let src_pool = Pool::new(setup(src_url)?);
    let dst_pool = Pool::new(setup(tgt_url)?);
    let mut c = src_pool.get_conn().await?;
    let info = read_table(&mut c, &db, &table)
        .await?
        .ok_or("no such table")?;
    let chunks = plan_chunks(&mut c, &info, chunk_rows, 0).await?;
    drop(c);
    let queue = Arc::new(std::sync::Mutex::new(chunks));
    let opts = CopyOptions {
        batch_rows,
        method,
        allow_invalid_dates: true,
        ..CopyOptions::default()
    };
    let limiter = Arc::new(RateLimiter::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (queue, info, opts, limiter) =
            (queue.clone(), info.clone(), opts.clone(), limiter.clone());
        let (src_pool, dst_pool) = (src_pool.clone(), dst_pool.clone());
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut rows = 0u64;
            let mut src: Conn = src_pool.get_conn().await?;
            let mut dst: Conn = dst_pool.get_conn().await?;
            loop {
                let next = queue.lock().map_err(|_| "poisoned")?.pop();
                let Some(chunk) = next else { break };
                if read_only {
                    let key = info.key.clone().unwrap_or_default();
                    let (pred, params) =
                        range_predicate(&key, chunk.lower.as_deref(), chunk.upper.as_deref());
                    let sql = format!("SELECT * FROM `{}`.`{}` WHERE {pred}", info.db, info.name);
                    let mut r = src.exec_iter(sql, params).await?;
                    while r.next().await?.is_some() {
                        rows += 1;
                    }
                } else {
                    let s = copy_chunk(
                        &mut src,
                        &mut dst,
                        &info,
                        (&db, &info.name),
                        &chunk,
                        None,
                        &opts,
                        &limiter,
                    )
                    .await?;
                    rows += s.rows;
                }
            }
            Ok::<u64, Box<dyn std::error::Error + Send + Sync>>(rows)
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await?.map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{rows} rows in {secs:.2} s: {:.0} rows/s",
        rows as f64 / secs
    );
    Ok(())
}
