//! The periodic tasks each capability contributes — the lease reaper (jobs), endpoint health
//! (delivery), the Front sync (front), retention, backups and database maintenance (ops) — and
//! the registry they are registered into at start. Cron (above) ticks them by name; it knows
//! no task, and the config's `[cron]` section is checked against the names registered here.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

/// What a run did: stored with the run, `rows_affected` also in its own column.
#[derive(Debug, Clone, Default)]
pub struct TaskReport {
    pub rows_affected: u64,
    pub detail: Value,
}

/// A task's name, job kind, default schedule and what it does.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    /// As in `cron.<name>`.
    pub name: &'static str,
    /// The job kind its runs are: `cron.<name>`.
    pub kind: &'static str,
    /// A 6-field cron expression or `off`.
    pub default_schedule: &'static str,
    /// One line for the admin page and `config.toml`.
    pub describe: &'static str,
}

/// Runs one task once.
pub type TaskFn = Arc<dyn Fn() -> BoxFuture<'static, Result<TaskReport, String>> + Send + Sync>;

/// Every registered task.
#[derive(Clone, Default)]
pub struct Periodic {
    tasks: BTreeMap<&'static str, (TaskSpec, TaskFn)>,
}

impl Periodic {
    /// Registers `spec`, run by `run`.
    ///
    /// # Panics
    /// When a task of that name is already registered (a programming error caught at start).
    pub fn register(&mut self, spec: TaskSpec, run: TaskFn) {
        assert!(
            self.tasks.insert(spec.name, (spec, run)).is_none(),
            "periodic task {} registered twice",
            spec.name
        );
    }

    /// Every task's spec, by name.
    pub fn specs(&self) -> impl Iterator<Item = &TaskSpec> {
        self.tasks.values().map(|(s, _)| s)
    }

    /// The spec of task `name`.
    #[must_use]
    pub fn spec(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.get(name).map(|(s, _)| s)
    }

    /// Runs task `name` once.
    ///
    /// # Errors
    /// The task's failure, or that there is no such task.
    pub async fn run(&self, name: &str) -> Result<TaskReport, String> {
        match self.tasks.get(name) {
            Some((_, run)) => run().await,
            None => Err(format!("there is no cron task `{name}`")),
        }
    }
}
