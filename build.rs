//! Finds which of the test suite's outside tools this machine lacks, so that their tests show as
//! `ignored` in `cargo test`'s summary, with what to install, instead of passing without running.
//! Each missing tool sets a `missing_*` cfg that tests/api uses as
//! `#[cfg_attr(missing_go, ignore = "needs Go: …")]`.
//!
//! Under `CI` (any value) nothing is ever declared missing: there every test runs, and one whose
//! tool is absent fails. The probes are `PATH` look-ups, three `--version` runs and looks into
//! `tests/receivers/node_modules` and the test venv, and they only run again when `CI`, `PATH` or
//! `SCHEMATHESIS` change or something is installed into (or removed from) a `PATH` directory,
//! `tests/receivers` or the venv, so installing a tool turns its tests back on without
//! `cargo clean`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Every cfg this script may set.
const CFGS: [&str; 9] = [
    "missing_node",
    "missing_node_packages",
    "missing_python3",
    "missing_python_packages",
    "missing_go",
    "missing_schemathesis",
    "missing_chromium",
    "missing_chromedriver",
    "missing_postgres",
];

fn main() {
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for var in ["CI", "PATH", "SCHEMATHESIS"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let root = canonical(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = canonical(env::var_os("OUT_DIR").expect("OUT_DIR"));
    // Only paths that exist: Cargo reruns a build script on every build while one it watches is
    // missing. A directory is watched with everything under it.
    for dir in path_dirs() {
        // Not one holding the target directory: that changes with every build.
        if !root.starts_with(&dir) && !out.starts_with(&dir) {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    }
    let receivers = root.join("tests/receivers");
    let express = receivers.join("node_modules/express");
    // `npm ci --prefix tests/receivers` creates node_modules/ in there, and npm rewrites
    // node_modules/.package-lock.json on every install.
    if let Some(dir) = [&express, &receivers].into_iter().find(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    for file in ["package.json", "node_modules/.package-lock.json"] {
        let file = receivers.join(file);
        if file.is_file() {
            println!("cargo::rerun-if-changed={}", file.display());
        }
    }
    // Installing PostgreSQL (Debian puts its programs there, off PATH) turns its tests on.
    // (Without it, the package's /usr/bin/psql changes a PATH directory, watched above.)
    if Path::new("/usr/lib/postgresql").is_dir() {
        println!("cargo::rerun-if-changed=/usr/lib/postgresql");
    }
    let venv = root.join("target/schemathesis-venv");
    let venv_st = venv.join("bin/st");
    if let Some(bin) = venv_st.parent().filter(|bin| bin.is_dir()) {
        println!("cargo::rerun-if-changed={}", bin.display());
    }
    // The PyPI packages tests/api/provider_libs.rs signs with, which .ci/run installs into the
    // same venv: watched where they are, else where they would be installed.
    let site_packages = site_packages(&venv);
    let python_packages = site_packages
        .as_ref()
        .map(|dir| PYTHON_PACKAGES.map(|p| dir.join(p)))
        .filter(|dirs| dirs.iter().all(|dir| dir.is_dir()));
    if let Some(dirs) = &python_packages {
        for dir in dirs {
            println!("cargo::rerun-if-changed={}", dir.display());
        }
    } else if let Some(dir) = &site_packages {
        println!("cargo::rerun-if-changed={}", dir.display());
    }

    if env::var_os("CI").is_some() {
        return;
    }
    let missing = |cfg: &str| println!("cargo::rustc-cfg={cfg}");
    // The same checks the tests make at run time (their fallback for a tool removed later).
    let [node, python3, go] = std::thread::scope(|s| {
        [
            s.spawn(|| runs("node", &["--version"])),
            s.spawn(|| runs("python3", &["--version"])),
            s.spawn(|| runs("go", &["version"])),
        ]
        .map(|probe| probe.join().expect("probe"))
    });
    if !node {
        missing("missing_node");
    }
    // Every dependency package.json names, so a node_modules/ from before one was added counts
    // as missing too.
    if !express.is_dir()
        || !npm_dependencies(&receivers)
            .iter()
            .all(|p| receivers.join("node_modules").join(p).is_dir())
    {
        missing("missing_node_packages");
    }
    if python_packages.is_none() {
        missing("missing_python_packages");
    }
    if !python3 {
        missing("missing_python3");
    }
    if !go {
        missing("missing_go");
    }
    // As tests/api/schemathesis.rs picks it: $SCHEMATHESIS, the pinned venv .ci/run makes, `st`.
    let schemathesis = match env::var_os("SCHEMATHESIS") {
        Some(st) if Path::new(&st).components().count() > 1 => executable(&root.join(st)),
        Some(st) => which(Path::new(&st)).is_some(),
        None => executable(&venv_st) || which(Path::new("st")).is_some(),
    };
    if !schemathesis {
        missing("missing_schemathesis");
    }
    if which(Path::new("chromium"))
        .or_else(|| which(Path::new("chromium-browser")))
        .is_none()
    {
        missing("missing_chromium");
    }
    if which(Path::new("chromedriver")).is_none() {
        missing("missing_chromedriver");
    }
    // As tests/api/helpers/postgres.rs finds them: on PATH, else Debian's versioned folder.
    let debian_postgres = std::fs::read_dir("/usr/lib/postgresql").is_ok_and(|versions| {
        versions
            .filter_map(Result::ok)
            .any(|v| v.path().join("bin/initdb").is_file() && v.path().join("bin/pg_ctl").is_file())
    });
    if !debian_postgres
        && (which(Path::new("initdb")).is_none() || which(Path::new("pg_ctl")).is_none())
    {
        missing("missing_postgres");
    }
}

/// The PyPI packages (as imported) the test venv must hold for tests/api/provider_libs.rs.
const PYTHON_PACKAGES: [&str; 2] = ["slack_sdk", "standardwebhooks"];

/// The venv's `lib/python3.*/site-packages`, if it has one.
fn site_packages(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages"))
        .find(|dir| dir.is_dir())
}

/// The names under `"dependencies"` in `dir/package.json` (a file this repository writes, read
/// without a JSON parser: every `"name": "version"` pair inside that object).
fn npm_dependencies(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("package.json")).unwrap_or_default();
    let deps = text
        .split_once("\"dependencies\"")
        .and_then(|(_, rest)| rest.split_once('{'))
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(deps, _)| deps.to_string())
        .unwrap_or_default();
    deps.split(',')
        .filter_map(|pair| pair.split_once(':'))
        .map(|(name, _)| name.trim().trim_matches('"').to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The absolute, existing directories on `PATH`, each once.
fn path_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
        // A relative entry is not a place tools get installed into.
        if dir.is_absolute()
            && let Ok(dir) = dir.canonicalize()
            && dir.is_dir()
            && !dirs.contains(&dir)
        {
            dirs.push(dir);
        }
    }
    dirs
}

fn canonical(path: impl Into<PathBuf>) -> PathBuf {
    let path = path.into();
    path.canonicalize().unwrap_or(path)
}

/// `name` on `PATH`, if it is there and executable.
fn which(name: &Path) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| executable(path))
}

fn executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Whether `tool args` starts and exits successfully.
fn runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
