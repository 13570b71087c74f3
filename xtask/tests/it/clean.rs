//! `cargo xtask clean` removes what the project created, and only that, wherever it
//! exists: its plan, and a real run on a machine that has neither kind nor Docker (a
//! machine that only ever ran `cargo xtask local`), which must still clean up and
//! succeed, saying what it skipped.

use std::process::Command;

use xtask::paths::workspace_root;

fn clean(args: &[&str], path: &std::ffi::OsStr) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("clean")
        .args(args)
        .env("PATH", path)
        .output()
        .expect("run xtask clean")
}

#[test]
fn the_plan_removes_only_what_the_project_created() {
    let output = clean(
        &["--dry-run"],
        &std::env::var_os("PATH").unwrap_or_default(),
    );
    assert!(output.status.success(), "{output:?}");
    let plan: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        plan,
        [
            "cargo xtask local --stop",
            "kind delete cluster --name monitoring-demo",
            "docker ps --all --quiet --filter label=io.observability-playground.started-by=xtask",
            "docker rm --force <each container listed>",
            "docker image prune --all --force --filter label=io.observability-playground.built-by=xtask",
            "remove target/local target/image target/cluster target/bench target/bench-tools",
        ]
    );
}

/// For real, with an empty PATH: no kind, no docker, nothing else either.
#[test]
fn without_kind_and_docker_it_cleans_what_exists_and_succeeds() {
    let _serial = crate::support::serial();
    let root = workspace_root();
    let generated = ["target/local", "target/cluster", "target/bench"];
    for dir in generated {
        let marker = root.join(dir).join("created-by-the-clean-test");
        std::fs::create_dir_all(marker.parent().expect("dir")).expect("create");
        std::fs::write(&marker, "").expect("marker");
    }
    let empty = std::env::temp_dir().join(format!("xtask-clean-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).expect("empty PATH dir");

    let output = clean(&[], empty.as_os_str());
    let _ = std::fs::remove_dir_all(&empty);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "clean failed:\n{stderr}");
    assert!(
        stderr.contains("skipped the kind cluster: kind is not installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped containers and images: no Docker engine answers"),
        "{stderr}"
    );
    for dir in generated {
        assert!(!root.join(dir).exists(), "{dir} is still there:\n{stderr}");
        assert!(stderr.contains(&format!("removed {dir}")), "{stderr}");
    }
}
