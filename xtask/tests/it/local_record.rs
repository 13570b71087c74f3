//! The local mesh's record (`target/local/mesh.json`) and lock are exact: `local --stop`
//! and `clean` leave alone a recorded pid that is now another program (and say so); one
//! `cargo xtask local` runs at a time, a second touching nothing of the first; `--stop`
//! still stops the one holding the lock; SIGHUP, and closing its terminal for real (a
//! pseudo-terminal), stop the mesh like Ctrl+C; the identity reader used off Linux (`ps`)
//! works. Real processes throughout: `sleep`s posing as the mesh's programs, and real
//! meshes of the seven services (no tools).
//!
//! Every test here writes target/local/, and some start a mesh on the fixed ports: each
//! holds `support::serial()`.

use std::{
    fs::{File, OpenOptions},
    io::Write as _,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{serial, start_local, stop_local, xtask};

fn state_dir() -> PathBuf {
    xtask::paths::local_state()
}

fn record_path() -> PathBuf {
    state_dir().join("mesh.json")
}

fn read_record() -> Value {
    let text = std::fs::read_to_string(record_path()).expect("the record");
    serde_json::from_str(&text).expect("the record is JSON")
}

/// Whether `pid` is a process that has not exited (a zombie has: here pid 1 may not reap
/// the orphans of a stopped mesh). Read from /proc by the test itself, not by xtask.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(!rest.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// A `sleep` whose command line begins with `name`: what the old name match took for
/// the mesh's program. Killed when dropped.
struct Impostor(Child);

impl Impostor {
    fn start(name: &str) -> Impostor {
        let child = Command::new("sleep")
            .arg0(name)
            .arg("120")
            .spawn()
            .expect("start sleep");
        Impostor(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn still_runs(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A record, not stopped, whose every pid is an impostor's: the supervisor's and the
/// service's identities name other start times; the tool's record has none (an older
/// xtask's record, with the `program` it kept instead).
fn write_stale_record(supervisor: u32, service: u32, tool: u32) {
    let other_boot = |tick: u32| json!({"program": "xtask", "started": format!("boot of another day tick {tick}")});
    let mut service_identity = other_boot(2);
    service_identity["program"] = json!("mock-service");
    let record = json!({
        "supervisor_pid": supervisor,
        "supervisor_identity": other_boot(1),
        "topology_file": null,
        "entry": "gateway-service",
        "services": [{
            "name": "gateway-service", "port": 30080, "admin_port": 31080,
            "pid": service, "identity": service_identity,
        }],
        "tools": [{
            "name": "prometheus", "url": "http://localhost:9090", "program": "prometheus",
            "pid": tool, "container": null,
        }],
        "stopped": false,
    });
    std::fs::create_dir_all(state_dir()).expect("target/local");
    std::fs::write(record_path(), record.to_string()).expect("write the record");
}

/// Runs `xtask ARGS` (with `path` as PATH, if given) against a record of impostors; they
/// must all still run, and each be named as left alone.
fn leaves_impostors_alone(args: &[&str], path: Option<&std::ffi::OsStr>) -> String {
    let mut impostors = [
        Impostor::start("xtask"),
        Impostor::start("mock-service"),
        Impostor::start("prometheus"),
    ];
    let [supervisor, service, tool] = impostors.each_ref().map(Impostor::pid);
    write_stale_record(supervisor, service, tool);
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(args);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let output = command.output().expect("run xtask");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    for impostor in &mut impostors {
        assert!(
            impostor.still_runs(),
            "pid {} was signalled:\n{stderr}",
            impostor.pid()
        );
    }
    for expected in [
        format!("the supervisor: pid {supervisor} is now another program; left alone"),
        format!("gateway-service: pid {service} is now another program; left alone"),
        format!("prometheus: pid {tool} was recorded without its start time"),
    ] {
        assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    }
    stderr
}

#[test]
fn local_stop_leaves_a_pid_that_is_now_another_program_alone() {
    let _serial = serial();
    leaves_impostors_alone(&["local", "--stop"], None);
    assert_eq!(
        read_record()["stopped"],
        true,
        "nothing recorded runs: stopped"
    );
}

#[test]
fn clean_leaves_a_pid_that_is_now_another_program_alone() {
    let _serial = serial();
    // No kind, no docker on PATH: only the local mesh and target/ are cleaned.
    let empty = std::env::temp_dir().join(format!("xtask-record-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("empty PATH dir");
    let stderr = leaves_impostors_alone(&["clean"], Some(empty.as_os_str()));
    let _ = std::fs::remove_dir_all(&empty);
    assert!(stderr.contains("removed target/local"), "{stderr}");
}

/// Runs `xtask ARGS`, its output in files; `None` if it has not exited within `timeout`
/// (it is then killed: it went on where it should have stopped).
fn run_bounded(args: &[&str], timeout: Duration) -> Option<Output> {
    let dir = std::env::temp_dir().join(format!("xtask-record-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("output dir");
    let file = |name: &str| File::create(dir.join(name)).expect("output file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdout(file("stdout"))
        .stderr(file("stderr"))
        .stdin(Stdio::null())
        .spawn()
        .expect("run xtask");
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    let output = status.map(|status| Output {
        status,
        stdout: read("stdout"),
        stderr: read("stderr"),
    });
    let _ = std::fs::remove_dir_all(&dir);
    output
}

/// A second `cargo xtask local` is refused, naming `holder`, and leaves the record and
/// the logs as they were.
fn second_local_is_refused(holder: u32) {
    let record = std::fs::read(record_path()).expect("the record");
    let log = state_dir().join("logs/gateway-service.log");
    let log_before = std::fs::read(&log).expect("the gateway's log");
    let second = run_bounded(&["local", "--no-observability"], Duration::from_secs(60));
    let Some(second) = second else {
        let _ = xtask(&["local", "--stop"]);
        panic!("the second `cargo xtask local` went on instead of stopping at the lock");
    };
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let expected = format!(
        "another `cargo xtask local` (pid {holder}) is starting or running; stop it with `cargo xtask local --stop`"
    );
    assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    assert!(!stderr.contains("cargo build"), "it built:\n{stderr}");
    assert_eq!(
        std::fs::read(record_path()).expect("the record"),
        record,
        "the record changed"
    );
    assert_eq!(
        std::fs::read(&log).expect("the log"),
        log_before,
        "the log changed"
    );
}

#[test]
fn a_second_local_while_the_first_builds_touches_nothing() {
    let _serial = serial();
    // What the first `cargo xtask local` has while it builds: the lock, and the previous
    // run's record and logs, not yet replaced.
    let logs = state_dir().join("logs");
    std::fs::create_dir_all(&logs).expect("target/local/logs");
    let previous = json!({
        "supervisor_pid": 1, "topology_file": null, "entry": "gateway-service",
        "services": [], "tools": [], "stopped": true,
    });
    std::fs::write(record_path(), previous.to_string()).expect("record");
    std::fs::write(logs.join("gateway-service.log"), "the previous run\n").expect("log");
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(state_dir().join("local.lock"))
        .expect("the lock file");
    lock.try_lock().expect("no `cargo xtask local` runs here");
    lock.set_len(0).expect("truncate");
    write!(lock, "{}", std::process::id()).expect("write the pid");

    second_local_is_refused(std::process::id());
}

/// The pids of the services in the running mesh's record.
fn service_pids() -> Vec<u32> {
    let record = read_record();
    let pids: Vec<u32> = record["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| u32::try_from(s["pid"].as_u64().expect("pid")).expect("a pid"))
        .collect();
    assert_eq!(pids.len(), 7, "{record}");
    pids
}

#[test]
fn a_running_local_turns_a_second_away_and_stops_on_local_stop() {
    let _serial = serial();
    let local = start_local(&["--no-observability"]);
    second_local_is_refused(local.pid());
    let pids = service_pids();
    assert!(pids.iter().all(|pid| running(*pid)), "{pids:?}");

    stop_local(local);
    assert!(pids.iter().all(|pid| !running(*pid)), "{pids:?}");
    assert_eq!(read_record()["stopped"], true);
}

#[test]
fn sighup_stops_the_mesh_like_ctrl_c() {
    let _serial = serial();
    let mut local = start_local(&["--no-observability"]);
    let pids = service_pids();
    let supervisor = nix::unistd::Pid::from_raw(i32::try_from(local.pid()).expect("pid"));
    nix::sys::signal::kill(supervisor, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");

    let status = local
        .exited_within(Duration::from_secs(60))
        .expect("`cargo xtask local` exits on SIGHUP");
    let left: Vec<u32> = pids.into_iter().filter(|pid| running(*pid)).collect();
    if !left.is_empty() {
        // Or they would hold the fixed ports for every test after this one.
        let _ = xtask(&["local", "--stop"]);
    }
    assert!(
        left.is_empty(),
        "services still running: {left:?} ({status})"
    );
    assert!(status.success(), "{status}");
    assert_eq!(read_record()["stopped"], true, "{}", read_record());
}

/// A pseudo-terminal's two ends: the master, which the test holds (closing it is closing
/// the terminal), and the slave, the terminal that `cargo xtask local` gets.
fn pseudo_terminal() -> (nix::pty::PtyMaster, File) {
    use nix::{fcntl::OFlag, pty};
    use std::os::unix::fs::OpenOptionsExt as _;
    let master = pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("a pseudo-terminal");
    pty::grantpt(&master).expect("grantpt");
    pty::unlockpt(&master).expect("unlockpt");
    let path = pty::ptsname_r(&master).expect("its slave's path");
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(OFlag::O_NOCTTY.bits())
        .open(path)
        .expect("the slave");
    (master, slave)
}

/// The real thing: `cargo xtask local` in a session of its own whose controlling terminal
/// is a pseudo-terminal (`setsid --ctty`), which the test closes once the mesh is up. The
/// kernel hangs the terminal up: SIGHUP to `cargo xtask local`, and every later write to
/// its stdout or stderr fails, which must not stop it from stopping the mesh.
#[test]
fn closing_its_terminal_stops_the_mesh() {
    use std::io::Read as _;
    let _serial = serial();
    let Some(setsid) = crate::support::require("setsid", "apt-get install util-linux") else {
        return;
    };
    let (mut master, slave) = pseudo_terminal();
    let mut local = Command::new(setsid)
        .arg("--ctty")
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(["local", "--no-observability"])
        .stdin(slave.try_clone().expect("slave"))
        .stdout(slave.try_clone().expect("slave"))
        .stderr(slave)
        .spawn()
        .expect("start xtask local");
    // The terminal's output, until the mesh is up; the master is closed when this ends.
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0_u8; 4096];
        while let Ok(read @ 1..) = master.read(&mut chunk) {
            seen.extend_from_slice(&chunk[..read]);
            if String::from_utf8_lossy(&seen).contains("The mesh is up") {
                let _ = up_tx.send(());
                return;
            }
        }
    });
    let up = up_rx.recv_timeout(Duration::from_secs(300));
    if up.is_err() {
        let _ = local.kill();
        let _ = local.wait();
        panic!("`cargo xtask local` under a pseudo-terminal did not come up");
    }
    let pids = service_pids();
    let supervisor =
        u32::try_from(read_record()["supervisor_pid"].as_u64().expect("pid")).expect("a pid");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while running(supervisor) && std::time::Instant::now() < deadline {
        let _ = local.try_wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = local.try_wait();
    let supervisor_left = running(supervisor);
    let left: Vec<u32> = pids.into_iter().filter(|pid| running(*pid)).collect();
    if supervisor_left || !left.is_empty() {
        let _ = xtask(&["local", "--stop"]);
        let _ = local.kill();
    }
    let _ = local.wait();
    assert!(
        !supervisor_left,
        "`cargo xtask local` outlived its terminal"
    );
    assert!(left.is_empty(), "services still running: {left:?}");
    assert_eq!(read_record()["stopped"], true, "{}", read_record());
}

/// The reader used off Linux (`ps`), run here: it tells a running process by the program
/// it runs (not by the name on its command line), the same twice, and gives nothing for
/// a pid that has exited.
#[test]
fn ps_tells_a_process_like_proc_does() {
    use xtask::identity::ProcessIdentity;
    if crate::support::require("ps", "apt-get install procps").is_none() {
        return;
    }
    let mut impostor = Impostor::start("prometheus");
    let pid = impostor.pid();
    let identity = ProcessIdentity::from_ps(pid).expect("ps answers for a running pid");
    assert_eq!(ProcessIdentity::from_ps(pid), Some(identity.clone()));
    assert!(identity.program.contains("sleep"), "{identity:?}");
    assert!(!identity.started.is_empty(), "{identity:?}");
    let _ = impostor.0.kill();
    let _ = impostor.0.wait();
    assert_eq!(ProcessIdentity::from_ps(pid), None, "an exited pid");
}

/// The supervisor killed outright (no chance to stop anything): `local --stop` finds its
/// services by the record and stops them, each being still the process recorded.
#[test]
fn local_stop_stops_the_recorded_services_of_a_killed_supervisor() {
    let _serial = serial();
    let mut local = start_local(&["--no-observability"]);
    let pids = service_pids();
    let supervisor = nix::unistd::Pid::from_raw(i32::try_from(local.pid()).expect("pid"));
    nix::sys::signal::kill(supervisor, nix::sys::signal::Signal::SIGKILL).expect("SIGKILL");
    local
        .exited_within(Duration::from_secs(60))
        .expect("killed");
    assert!(pids.iter().all(|pid| running(*pid)), "they outlive it");

    let stop = xtask(&["local", "--stop"]);
    let stderr = String::from_utf8_lossy(&stop.stderr);
    assert!(stop.status.success(), "{stderr}");
    let left: Vec<u32> = pids.iter().copied().filter(|pid| running(*pid)).collect();
    assert!(left.is_empty(), "still running: {left:?}\n{stderr}");
    for pid in pids {
        assert!(stderr.contains(&format!("(pid {pid})")), "{stderr}");
    }
    assert_eq!(read_record()["stopped"], true);
}
