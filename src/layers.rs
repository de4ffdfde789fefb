//! The layer rule, kept by tests: modules import only downwards, and every table's SQL lives in
//! its owner.
//!
//! Layers, bottom up (a module may use those below it, never those above; within a layer only
//! itself):
//!
//! | layer | modules |
//! |---|---|
//! | primitives | `clock`, `ids`, `redact`, `config`, `error`, `counters`, `sql`, `pagination`, `http`, `auth` (in that order) |
//! | store | `store` (pool, writer, migrations, the audit record, kv, the ticker lease) |
//! | jobs | `jobs` (queue SQL, registry, worker, periodic tasks) |
//! | capabilities | `events` → `delivery` → `inbound` → `front` → `sources` → `tasks` |
//! | cron and ops | `cron` → `ops` |
//! | web | `web` (route table and OpenAPI, `/metrics`, health, assets) |
//! | top | `app` → `cli` |
//!
//! Where a lower module must reach up, the higher one hands down a hook at start: fan-out
//! (`events::FanOut`, implemented by delivery), periodic tasks (`jobs::periodic`, registered by
//! each capability), inbound processing (`inbound::Processors`, registered by front and sources).

/// Every module of the crate, lowest first; a module may use only those before it.
pub const ORDER: &[&str] = &[
    "clock",
    "ids",
    "redact",
    "config",
    "error",
    "counters",
    "sql",
    "pagination",
    "http",
    "auth",
    "store",
    "jobs",
    "events",
    "delivery",
    "inbound",
    "front",
    "sources",
    "tasks",
    "cron",
    "ops",
    "web",
    "app",
    "cli",
];

/// Each table and the module that owns it: the only one whose code may name it in SQL.
pub const OWNERS: &[(&str, &str)] = &[
    ("jobs", "jobs/queue.rs"),
    ("audit_log", "store/audit.rs"),
    ("kv", "store/kv.rs"),
    ("leases", "store/leader.rs"),
    ("events", "events/store.rs"),
    ("event_types", "events/store.rs"),
    ("webhooks", "delivery/store.rs"),
    ("webhook_secrets", "delivery/store.rs"),
    ("deliveries", "delivery/store.rs"),
    ("delivery_attempts", "delivery/store.rs"),
    ("inbound_events", "inbound/store.rs"),
    ("inbound_keys", "inbound/store.rs"),
    ("inbound_rejected", "inbound/store.rs"),
    ("cron_runs", "cron/store.rs"),
    ("tasks", "tasks/store.rs"),
    ("task_attempts", "tasks/store.rs"),
    ("schedules", "tasks/store.rs"),
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{ORDER, OWNERS};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// `src/delivery/send.rs` → `delivery/send.rs`.
    fn relative(path: &Path) -> String {
        path.strip_prefix(src())
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// The code of a file without comments and without its `#[cfg(test)]` module (tests may use
    /// anything).
    fn code(text: &str) -> String {
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => text,
        };
        text.lines()
            .map(|l| match l.find("//") {
                // A `//` inside a string (a URL) is kept: only lines whose code starts with it,
                // or trailing comments after code, are cut.
                Some(i) if l[..i].matches('"').count() % 2 == 0 => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every `crate::<module>` a piece of code names (`use crate::{a, b}` included).
    fn uses(code: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        out.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        }
        out
    }

    fn module_of(rel: &str) -> &str {
        rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
    }

    fn rank(module: &str) -> Option<usize> {
        ORDER.iter().position(|m| *m == module)
    }

    /// `(file, the module it names)` for every import that points up or sideways.
    fn upward() -> Vec<(String, String)> {
        let mut files = Vec::new();
        rust_files(&src(), &mut files);
        let mut bad = Vec::new();
        for path in files {
            let rel = relative(&path);
            if matches!(rel.as_str(), "lib.rs" | "main.rs" | "layers.rs") {
                continue;
            }
            let module = module_of(&rel);
            let Some(own) = rank(module) else {
                bad.push((
                    rel.clone(),
                    format!("(the module `{module}` is not in layers::ORDER)"),
                ));
                continue;
            };
            let text = std::fs::read_to_string(&path).expect("read");
            for used in uses(&code(&text)) {
                // The crate root's items (`VERSION`, `install_tls_provider`) are primitives.
                let Some(theirs) = rank(&used) else { continue };
                if theirs > own || (theirs == own && used != module) {
                    bad.push((rel.clone(), used));
                }
            }
        }
        bad.sort();
        bad.dedup();
        bad
    }

    #[test]
    fn every_module_is_in_a_layer() {
        let lib = std::fs::read_to_string(src().join("lib.rs")).expect("lib.rs");
        for line in lib.lines() {
            if let Some(m) = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
            {
                let m = m.trim_end_matches(';');
                assert!(
                    m == "layers" || rank(m).is_some(),
                    "module `{m}` is in no layer: add it to layers::ORDER"
                );
            }
        }
    }

    #[test]
    fn imports_only_point_down() {
        let bad = upward();
        assert!(
            bad.is_empty(),
            "imports that point up a layer (file → module it uses):\n{}",
            bad.iter()
                .map(|(f, m)| format!("  {f} → crate::{m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn the_layer_check_catches_an_upward_import() {
        let found = uses(&code(
            "use crate::web::health;\n// use crate::app;\nlet x = crate::{cron, jobs::Job};",
        ));
        assert_eq!(found, ["web", "cron", "jobs"]);
        assert!(rank("web") > rank("store"), "store → web would be reported");
    }

    /// SQL keywords after which a table name comes.
    const AFTER: [&str; 6] = ["FROM ", "INTO ", "UPDATE ", "JOIN ", "TABLE ", "EXISTS "];

    /// Tables named in the SQL of a piece of code.
    fn tables_in(code: &str) -> Vec<String> {
        let mut out = Vec::new();
        for kw in AFTER {
            let mut rest = code;
            while let Some(i) = rest.find(kw) {
                rest = &rest[i + kw.len()..];
                let name: String = rest
                    .trim_start_matches("IF NOT EXISTS ")
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if OWNERS.iter().any(|(t, _)| *t == name) {
                    out.push(name);
                }
            }
        }
        out
    }

    #[test]
    fn every_owner_migrates_only_its_own_tables() {
        let mut bad = Vec::new();
        for (_, owner) in OWNERS {
            let dir = src()
                .join(owner)
                .parent()
                .map(|d| d.join("migrations"))
                .expect("dir");
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            // The SQLite steps, and the PostgreSQL ones in `postgres/`.
            let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
            if let Ok(pg) = std::fs::read_dir(dir.join("postgres")) {
                paths.extend(pg.map(|e| e.expect("entry").path()));
            }
            for path in paths.into_iter().filter(|p| p.is_file()) {
                let sql = std::fs::read_to_string(&path).expect("read");
                let sql: String = sql
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let mut named = tables_in(&sql);
                let mut rest = sql.as_str();
                while let Some(i) = rest.find(" ON ") {
                    rest = &rest[i + 4..];
                    let name: String = rest
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if OWNERS.iter().any(|(t, _)| *t == name) {
                        named.push(name);
                    }
                }
                for table in named {
                    let table_owner = OWNERS.iter().find(|(t, _)| *t == table).map(|(_, o)| *o);
                    let same_dir = table_owner.and_then(|o| Path::new(o).parent())
                        == Path::new(owner).parent();
                    if !same_dir {
                        bad.push(format!("  {} names `{table}`", relative(&path)));
                    }
                }
            }
        }
        bad.sort();
        bad.dedup();
        assert!(
            bad.is_empty(),
            "migrations touching another owner's tables:\n{}",
            bad.join("\n")
        );
    }

    #[test]
    fn every_table_is_written_and_read_by_its_owner_only() {
        let mut files = Vec::new();
        rust_files(&src(), &mut files);
        let mut bad = Vec::new();
        for path in files {
            let rel = relative(&path);
            if rel == "layers.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for table in tables_in(&code(&text)) {
                let owner = OWNERS
                    .iter()
                    .find(|(t, _)| *t == table)
                    .map(|(_, o)| *o)
                    .unwrap_or_default();
                if rel != owner {
                    bad.push(format!("  {rel} names `{table}` (owned by {owner})"));
                }
            }
        }
        bad.sort();
        bad.dedup();
        assert!(
            bad.is_empty(),
            "SQL outside its table's owner:\n{}",
            bad.join("\n")
        );
    }
}
