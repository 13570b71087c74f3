//! What the test modules share: finding the tools a test needs (or skipping without
//! them), one lock for the tests that take the local mesh's fixed ports, `cargo xtask
//! local` run and stopped, and, in submodules, the real OTLP receiver (`otlp`), the
//! kind cluster of kubectl and kind stand-ins (`standin`) and the NetworkPolicy evaluator
//! (`network_policy`).

pub mod network_policy;
pub mod otlp;
pub mod standin;
pub mod tilt;

pub use otlp::TraceReceiver;

use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use xtask::{cmd::find_on_path, paths::workspace_root};

/// A test cannot run here without `what`: outside CI it says `SKIPPED:` with the reason
/// and how to get it, and the caller returns; under `CI` (where `.ci/run` installs
/// everything) it fails.
pub fn skip(what: &str, how: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide {what} (see .ci/run): {how}"
    );
    say_skipped(what, how);
}

/// Straight to the process's stderr: libtest captures `eprintln!` of a passing test, and
/// a skip must reach the person running `cargo test`.
fn say_skipped(what: &str, how: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: needs {what}, which this machine lacks ({how})"
    );
}

/// A program on PATH or in target/tools-venv/bin (where `.ci/run` puts the Python
/// validators); `None`, after [`skip`], when it is missing.
pub fn require(program: &str, how: &str) -> Option<PathBuf> {
    let found = find_on_path(program).or_else(|| {
        let venv = workspace_root()
            .join(xtask::paths::TOOLS_VENV)
            .join("bin")
            .join(program);
        venv.is_file().then_some(venv)
    });
    if found.is_none() {
        skip(program, how);
    }
    found
}

/// Prometheus and Alertmanager, or `SKIPPED:` naming the one missing. Debian names
/// Alertmanager's binary `prometheus-alertmanager`, nixpkgs `alertmanager`.
pub fn require_prometheus_and_alertmanager() -> Option<(PathBuf, PathBuf)> {
    let how = "apt-get install prometheus prometheus-alertmanager, or nix develop";
    let prometheus = require("prometheus", how)?;
    let alertmanager = xtask::cmd::find_on_path("alertmanager")
        .or_else(|| require("prometheus-alertmanager", how))?;
    Some((prometheus, alertmanager))
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

/// Whether the image's static binary can be built here: the nodes' Rust target and a C
/// compiler for musl (jemalloc is C); [`skip`] with what is missing otherwise.
pub fn require_static_build() -> bool {
    if !require_rust_target(&xtask::cluster::images::node_target()) {
        return false;
    }
    let runner = xtask::cluster::Runner { dry_run: false };
    match xtask::cluster::images::musl_toolchain(runner) {
        Ok(_) => true,
        Err(why) => {
            skip("a C compiler for musl", &format!("{why:#}"));
            false
        }
    }
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

/// Runs `cargo xtask ARGS` to completion.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

/// Fails, with its stderr, unless the command succeeded; its stdout.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A running `cargo xtask local`, stopped when dropped: a test that fails midway must not
/// leave the mesh holding the fixed ports for every test after it.
pub struct LocalRun(Option<Child>);

/// Starts `cargo xtask local ARGS` and returns once it says the mesh is up. Hold
/// [`serial`] first: the mesh takes fixed ports.
pub fn start_local(args: &[&str]) -> LocalRun {
    let mut local = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("local")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start xtask local");
    let lines = lines_of(local.stdout.take().expect("stdout"));
    let run = LocalRun(Some(local));
    // Generous: the first run may build mock-service.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let up = std::iter::from_fn(|| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        lines.recv_timeout(left).ok()
    })
    .any(|line| line.contains("The mesh is up"));
    assert!(up, "`cargo xtask local {}` did not come up", args.join(" "));
    run
}

/// Each line `output` (a child's stdout or stderr) writes, as it comes, read by a thread
/// of its own that ends with the output. It reads on after the receiver is dropped, so
/// that the child never blocks on a full pipe.
pub fn lines_of(output: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    received
}

/// `cargo xtask local --stop`, then waits for the `cargo xtask local` it stops, which
/// must succeed.
pub fn stop_local(mut run: LocalRun) {
    let mut local = run.0.take().expect("running");
    succeeded(&xtask(&["local", "--stop"]));
    let status = local.wait().expect("xtask local exits");
    assert!(status.success(), "xtask local: {status}");
}

impl LocalRun {
    /// The `cargo xtask local` process's pid.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Waits up to `timeout` for it to exit by itself; how it ended, or `None` (it is
    /// then stopped when dropped).
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let local = self.0.as_mut().expect("running");
            if let Some(status) = local.try_wait().expect("try_wait") {
                self.0 = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        if let Some(mut local) = self.0.take() {
            let _ = xtask(&["local", "--stop"]);
            let _ = local.kill();
            let _ = local.wait();
        }
    }
}
