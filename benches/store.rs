//! Store and job-engine benchmark: `cargo bench --bench store`.
//!
//! Prints, for `synchronous = full` and `normal`:
//! - the hardware reference: one row per transaction on one connection (what a design without
//!   group commit gets);
//! - enqueue throughput through the group-commit writer, one producer awaiting each commit and
//!   64 concurrent producers;
//! - claim + complete throughput of `system.noop` jobs with the real dispatcher (16 workers);
//! - p50/p99/max enqueue commit latency at a steady 5,000 enqueues/s.
//!
//! Set `BENCH_SCALE=0.2` for a quicker, noisier run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrelay::config::{DatabaseConfig, Synchronous};
use hookrelay::jobs::worker::Dispatcher;
use hookrelay::jobs::{self, NewJob, Registry};
use hookrelay::store::{Store, StoreError};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

fn scale_factor() -> f64 {
    std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0)
}

fn scale(n: usize) -> usize {
    ((n as f64) * scale_factor()).max(100.0) as usize
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Store,
    wake: Arc<Notify>,
}

fn open(sync: Synchronous) -> Bench {
    let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "target".into()))
        .expect("tempdir");
    let cfg = DatabaseConfig {
        path: dir.path().join("bench.db"),
        url: None,
        synchronous: sync,
        pool_size: 4,
    };
    let wake = Arc::new(Notify::new());
    let store = hookrelay::app::open_store(&cfg, Arc::clone(&wake)).expect("store");
    Bench {
        _dir: dir,
        store,
        wake,
    }
}

fn noop_job() -> NewJob {
    NewJob::new("system.noop", json!({}))
}

async fn enqueue(store: &Store) -> Result<(), StoreError> {
    store
        .writer()
        .write(|tx| {
            jobs::enqueue(tx, &noop_job())?;
            Ok(())
        })
        .await
}

/// Enqueue waiting for room instead of failing when the queue is full (for bulk loading).
async fn enqueue_wait(store: &Store) {
    store
        .writer()
        .write_wait(|tx| {
            jobs::enqueue(tx, &noop_job())?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("enqueue");
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn baseline(sync: Synchronous) -> f64 {
    let dir = tempfile::tempdir_in("target").expect("tempdir");
    let conn =
        hookrelay::store::open_write_connection(&dir.path().join("raw.db"), sync).expect("open");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        .expect("table");
    let n = scale(2000);
    let start = Instant::now();
    for i in 0..n {
        conn.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])
            .expect("insert");
    }
    per_sec(n, start.elapsed())
}

async fn single_producer(b: &Bench) -> f64 {
    let n = scale(3000);
    let start = Instant::now();
    for _ in 0..n {
        enqueue(&b.store).await.expect("enqueue");
    }
    per_sec(n, start.elapsed())
}

async fn concurrent_producers(b: &Bench, producers: usize) -> f64 {
    let per = scale(100_000) / producers;
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let store = b.store.clone();
            tokio::spawn(async move {
                for _ in 0..per {
                    // A real client retries storage_busy; count only successful enqueues.
                    while let Err(StoreError::Busy) = enqueue(&store).await {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("producer");
    }
    per_sec(per * producers, start.elapsed())
}

async fn claim_and_complete(b: &Bench) -> f64 {
    let n = scale(100_000);
    let loaders: Vec<_> = (0..32)
        .map(|_| {
            let store = b.store.clone();
            tokio::spawn(async move {
                for _ in 0..n / 32 {
                    enqueue_wait(&store).await;
                }
            })
        })
        .collect();
    for l in loaders {
        l.await.expect("loader");
    }
    let total = (n / 32) * 32;
    let registry = Arc::new(Registry::with_builtins());
    let dispatcher = Dispatcher::new(
        b.store.clone(),
        registry,
        16,
        Duration::from_secs(60),
        Arc::clone(&b.wake),
    );
    let stop = CancellationToken::new();
    let stats = b.store.writer().stats();
    let (c0, k0) = (
        stats.commits.load(std::sync::atomic::Ordering::Relaxed),
        stats.commands.load(std::sync::atomic::Ordering::Relaxed),
    );
    let start = Instant::now();
    let run = tokio::spawn(dispatcher.run(stop.clone(), Duration::from_secs(5)));
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Cheap to ask: both partial indexes shrink to nothing as the run ends.
        let left: i64 = b
            .store
            .read(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM jobs INDEXED BY jobs_due WHERE state IN ('queued', 'retrying'))
                          + (SELECT COUNT(*) FROM jobs INDEXED BY jobs_leased WHERE state = 'running')",
                    [],
                    |r| r.get(0),
                )
                .map_err(StoreError::from)
            })
            .await
            .expect("count");
        if left == 0 {
            break;
        }
    }
    let elapsed = start.elapsed();
    stop.cancel();
    run.await.expect("dispatcher");
    let done: i64 = b
        .store
        .read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'",
                [],
                |r| r.get(0),
            )
            .map_err(StoreError::from)
        })
        .await
        .expect("count");
    assert_eq!(
        usize::try_from(done).unwrap_or(0),
        total,
        "every job succeeded"
    );
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed) - c0;
    let commands = stats.commands.load(std::sync::atomic::Ordering::Relaxed) - k0;
    println!(
        "  (writer: {:.2} commands per job, {:.1} jobs per commit)",
        commands as f64 / total as f64,
        total as f64 / commits.max(1) as f64
    );
    per_sec(total, elapsed)
}

/// Open-loop load at `rate`/s for `secs`; returns (p50, p99, max) commit latency.
async fn latency_at(b: &Bench, rate: u64, secs: u64) -> (Duration, Duration, Duration, usize) {
    let n = usize::try_from(rate * secs).unwrap_or(usize::MAX);
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let store = b.store.clone();
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = enqueue(&store).await.is_ok();
            (t.elapsed(), ok)
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut failed = 0;
    for t in tasks {
        let (d, ok) = t.await.expect("task");
        if ok {
            lat.push(d);
        } else {
            failed += 1;
        }
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    (
        pct(0.50),
        pct(0.99),
        *lat.last().unwrap_or(&Duration::ZERO),
        failed,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    println!(
        "hookrelay store benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let name = sync.pragma();
        println!("\n== synchronous = {name} ==");
        let raw = tokio::task::spawn_blocking(move || baseline(sync))
            .await
            .expect("baseline");
        println!("reference: one row per transaction, one connection      {raw:>10.0} commits/s");

        let b = open(sync);
        println!(
            "enqueue, 1 producer awaiting each commit               {:>10.0} jobs/s",
            single_producer(&b).await
        );
        println!(
            "enqueue, 64 concurrent producers (group commit)       {:>10.0} jobs/s",
            concurrent_producers(&b, 64).await
        );
        drop(b);

        let b = open(sync);
        println!(
            "claim + complete, system.noop, 16 workers             {:>10.0} jobs/s",
            claim_and_complete(&b).await
        );
        drop(b);

        let b = open(sync);
        let secs = if scale_factor() < 1.0 { 2 } else { 5 };
        let (p50, p99, max, failed) = latency_at(&b, 5000, secs).await;
        println!(
            "enqueue commit latency at 5,000/s for {secs}s                 p50 {}  p99 {}  max {}  refused {failed}",
            ms(p50),
            ms(p99),
            ms(max)
        );
        let commits = b
            .store
            .writer()
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed);
        let commands = b
            .store
            .writer()
            .stats()
            .commands
            .load(std::sync::atomic::Ordering::Relaxed);
        println!(
            "  (writer: {commands} commands in {commits} commits, {:.1} per commit)",
            commands as f64 / commits.max(1) as f64
        );
    }
}
