//! What the test modules share: finding the tools a test needs (or skipping without
//! them), and one lock for the tests that take the local mesh's fixed ports.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Mutex, MutexGuard},
};

use xtask::{cmd::find_on_path, workspace_root};

/// A test cannot run here without `what`: outside CI it says `SKIPPED:` with the reason
/// and how to get it, and the caller returns; under `CI` (where `.ci/run` installs
/// everything) it fails.
pub fn skip(what: &str, how: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {what} (see .ci/run): {how}"
    );
    eprintln!("SKIPPED: needs {what}, which this machine lacks ({how})");
}

/// A program on PATH or in target/tools-venv/bin (where `.ci/run` puts the Python
/// validators); `None`, after [`skip`], when it is missing.
pub fn require(program: &str, how: &str) -> Option<PathBuf> {
    let found = find_on_path(program).or_else(|| {
        let venv = workspace_root().join("target/tools-venv/bin").join(program);
        venv.is_file().then_some(venv)
    });
    if found.is_none() {
        skip(program, how);
    }
    found
}

/// Whether a Docker engine answers (`docker info`); [`skip`] when none does.
pub fn require_docker() -> bool {
    let answers = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|output| output.status.success());
    if !answers {
        skip(
            "a Docker engine",
            "start Docker, or as root: dockerd --iptables=false --bridge=none &",
        );
    }
    answers
}

/// Whether the Rust standard library for `target` is installed; [`skip`] when not.
pub fn require_rust_target(target: &str) -> bool {
    let installed = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", target])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
        .is_some_and(|dir| dir.is_dir());
    if !installed {
        skip(
            &format!("the Rust target {target}"),
            &format!("rustup target add {target}; rust-toolchain.toml lists it"),
        );
    }
    installed
}

/// Held by every test that binds the local mesh's fixed ports (30080..., 9090, ...),
/// starts `cargo xtask local`, or loads both cores (the benchmark): one binary runs its
/// tests in parallel, and these must take turns. A test that panicked while holding it
/// does not stop the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
