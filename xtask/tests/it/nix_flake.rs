//! The Nix dev shell (`flake.nix`, `flake.lock`), checked offline.
//!
//! No machine here reaches GitHub, so the real nixpkgs, rust-overlay and flake-utils can
//! never be evaluated. What can be checked:
//! - flake.lock pins the known-good revisions, in the exact format `nix flake lock` writes;
//! - Nix agrees that flake.lock matches flake.nix's inputs (no re-lock wanted);
//! - flake.nix evaluates, for each of the four systems, against stand-ins for its inputs
//!   (`tests/nix-stubs/`), and its dev shell holds every tool: a misspelt package
//!   attribute is a missing attribute in the stand-in nixpkgs, and fails here.
//!
//! Needs `nix` and `nix-instantiate` (Debian's `nix-bin`; as root no daemon is needed).
//! Without them the Nix tests say SKIPPED, except in CI, where they fail.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use xtask::paths::workspace_root;

/// One locked input of flake.lock.
struct Pin {
    input: &'static str,
    owner: &'static str,
    repo: &'static str,
    git_ref: Option<&'static str>,
    rev: &'static str,
    nar_hash: &'static str,
    last_modified: u64,
}

/// The pins of shared/nix-pins.md (the project's shared folder, beside the repository),
/// each read from public flake.lock files. Hard-coded so the test does not depend on
/// shared/ being present.
const PINS: [Pin; 4] = [
    Pin {
        input: "nixpkgs",
        owner: "NixOS",
        repo: "nixpkgs",
        git_ref: Some("nixos-25.11"),
        rev: "8fd9daa3db09ced9700431c5b7ad0e8ba199b575",
        nar_hash: "sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q=",
        last_modified: 1_778_430_510,
    },
    Pin {
        input: "rust-overlay",
        owner: "oxalica",
        repo: "rust-overlay",
        git_ref: None,
        rev: "4852a8aa041c94af55e136cde5b8b6d42c3563e8",
        nar_hash: "sha256-NTZzJ7xJvMXOonYqut3WLUhryeZj5QuuL0ANcqS7d30=",
        last_modified: 1_778_469_574,
    },
    Pin {
        input: "flake-utils",
        owner: "numtide",
        repo: "flake-utils",
        git_ref: None,
        rev: "11707dc2f618dd54ca8739b309ec4fc024de578b",
        nar_hash: "sha256-l0KFg5HjrsfsO/JpG+r7fRrqm12kzFHyUHqHCVpMMbI=",
        last_modified: 1_731_533_236,
    },
    Pin {
        // flake-utils' own input.
        input: "systems",
        owner: "nix-systems",
        repo: "default",
        git_ref: None,
        rev: "da67096a3b9bf56a91d16901293e51ba5b49a27e",
        nar_hash: "sha256-Vy1rq5AaRuLzOxct8nz4T6wlgyUR7zLU309k9mBC768=",
        last_modified: 1_681_028_828,
    },
];

const SYSTEMS: [&str; 4] = [
    "x86_64-linux",
    "aarch64-linux",
    "x86_64-darwin",
    "aarch64-darwin",
];

/// What the dev shell must hold besides the Rust toolchain: nixpkgs attribute names
/// (`prometheus.cli` is the output with promtool).
const TOOLS: [&str; 16] = [
    "cargo-nextest",
    "cargo-zigbuild",
    "zig",
    "kind",
    "kubectl",
    "kustomize",
    "tilt",
    "docker-client",
    "prometheus",
    "prometheus.cli",
    "prometheus-alertmanager",
    "grafana",
    "opentelemetry-collector-contrib",
    "jq",
    "oha",
    "wrk",
];

fn read(name: &str) -> String {
    let path = workspace_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The Jaeger image the cluster runs (`image:` in manifests/base/monitoring/jaeger.yaml).
fn cluster_jaeger_image() -> String {
    let manifest = read(xtask::paths::JAEGER_MANIFEST);
    let images: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.trim().strip_prefix("image: "))
        .collect();
    match images.as_slice() {
        [image] if image.starts_with("jaegertracing/") => (*image).to_owned(),
        other => panic!("expected one jaegertracing image in jaeger.yaml: {other:?}"),
    }
}

fn lock() -> Value {
    serde_json::from_str(&read("flake.lock")).expect("flake.lock is JSON")
}

#[test]
fn flake_lock_pins_the_known_good_revisions() {
    let lock = lock();
    assert_eq!(lock["version"], 7, "lock format version");
    assert_eq!(lock["root"], "root");
    let nodes = lock["nodes"].as_object().expect("nodes");
    let mut names: Vec<&str> = nodes.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["flake-utils", "nixpkgs", "root", "rust-overlay", "systems"]
    );
    assert_eq!(
        lock["nodes"]["root"]["inputs"],
        serde_json::json!({
            "flake-utils": "flake-utils",
            "nixpkgs": "nixpkgs",
            "rust-overlay": "rust-overlay",
        })
    );
    // rust-overlay uses our nixpkgs (follows), flake-utils has its `systems` input.
    assert_eq!(
        lock["nodes"]["rust-overlay"]["inputs"],
        serde_json::json!({ "nixpkgs": ["nixpkgs"] })
    );
    assert_eq!(
        lock["nodes"]["flake-utils"]["inputs"],
        serde_json::json!({ "systems": "systems" })
    );
    for node in ["nixpkgs", "systems"] {
        assert!(
            lock["nodes"][node].get("inputs").is_none(),
            "{node} has no inputs"
        );
    }

    let flake = read("flake.nix");
    for Pin {
        input,
        owner,
        repo,
        git_ref,
        rev,
        nar_hash,
        last_modified,
    } in PINS
    {
        let node = &lock["nodes"][input];
        assert_eq!(
            node["locked"],
            serde_json::json!({
                "lastModified": last_modified,
                "narHash": nar_hash,
                "owner": owner,
                "repo": repo,
                "rev": rev,
                "type": "github",
            }),
            "{input}: locked entry differs from shared/nix-pins.md"
        );
        let mut original = serde_json::json!({ "owner": owner, "repo": repo, "type": "github" });
        if let Some(git_ref) = git_ref {
            original["ref"] = git_ref.into();
        }
        assert_eq!(node["original"], original, "{input}: original");
        // The spelling in flake.nix must be the one locked (`NixOS`, not `nixos`).
        if input != "systems" {
            let url = match git_ref {
                Some(git_ref) => format!("\"github:{owner}/{repo}/{git_ref}\""),
                None => format!("\"github:{owner}/{repo}\""),
            };
            assert!(flake.contains(&url), "flake.nix must say {url}");
        }
    }
    assert!(
        flake.contains("inputs.nixpkgs.follows = \"nixpkgs\""),
        "rust-overlay must follow our nixpkgs"
    );
}

/// `nix flake lock` writes sorted keys, two-space indentation and a final newline; a
/// hand-written lock in another layout would be rewritten by the first `nix develop`.
#[test]
fn flake_lock_is_formatted_as_nix_writes_it() {
    let text = read("flake.lock");
    // serde_json's map is sorted, and its pretty printer indents like nlohmann::json.
    let canonical = serde_json::to_string_pretty(&lock()).expect("serialize") + "\n";
    assert!(
        text == canonical,
        "flake.lock is not in nix's layout; expected:\n{canonical}"
    );
}

#[test]
fn envrc_uses_the_flake() {
    assert_eq!(read(".envrc").trim(), "use flake");
}

// ---------------------------------------------------------------------------------
// With Nix.

/// `nix` and `nix-instantiate`, or `None` when missing outside CI (the test then says it
/// skipped).
fn nix() -> Option<(PathBuf, PathBuf)> {
    let how = "apt-get install nix-bin";
    crate::support::require("nix", how).zip(crate::support::require("nix-instantiate", how))
}

/// A temporary directory holding copies of the flake's files and of the stubs, so that
/// Nix sees them as a plain `path:` flake (in the git checkout it would see only tracked
/// files) and nothing in the repository is written.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("xtask-nix-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let root = workspace_root();
        for file in ["flake.nix", "flake.lock", "rust-toolchain.toml"] {
            std::fs::copy(root.join(file), dir.join(file)).expect("copy flake file");
        }
        copy_dir(&root.join("xtask/tests/nix-stubs"), &dir.join("stubs"));
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn flake(&self) -> String {
        format!("path:{}", self.0.display())
    }

    /// The flags that replace every input by its stub, without touching flake.lock.
    fn stub_inputs(&self) -> Vec<String> {
        let mut args = vec!["--offline".to_owned(), "--no-write-lock-file".to_owned()];
        for input in ["nixpkgs", "rust-overlay", "flake-utils"] {
            args.push("--override-input".to_owned());
            args.push(input.to_owned());
            args.push(format!("path:{}", self.path("stubs").join(input).display()));
        }
        args
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read stubs") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy stub");
        }
    }
}

/// Runs a Nix command with flakes enabled and no way out of the machine: any download
/// attempt goes to a closed loopback port and fails at once. Bounded to two minutes.
fn run(program: &Path, args: &[String]) -> Output {
    // Nix's store database takes one writer at a time: on a fresh store (CI's), a second
    // nix started meanwhile fails with "database is busy". The tests run in parallel, so
    // their nix commands take turns.
    static ONE_NIX_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_NIX_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut child = Command::new(program)
        .args(args)
        .env("NIX_CONFIG", "experimental-features = nix-command flakes")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("https_proxy", "http://127.0.0.1:9")
        .env("all_proxy", "http://127.0.0.1:9")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} {args:?} did not finish in 120 s", program.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn run_ok(program: &Path, args: &[String]) -> String {
    let output = run(program, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {} failed:\n{stderr}",
        program.display(),
        args.join(" ")
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Per system: the shell's package names (`name` or `name.output`), its derivation's
/// system, the toolchain's channel/extensions/targets, and the shellHook.
const SUMMARY: &str = r#"
shells: builtins.mapAttrs (system: s: {
  system = s.default.system;
  packages = map
    (p: if (p.outputName or "out") == "out" then p.name else "${p.name}.${p.outputName}")
    (builtins.filter (p: !(p ? channel)) s.default.nativeBuildInputs);
  rust = map (r: { inherit (r) channel extensions targets; })
    (builtins.filter (p: p ? channel) s.default.nativeBuildInputs);
  shellHook = s.default.shellHook;
}) shells
"#;

fn summary(nix: &Path, scratch: &Scratch) -> BTreeMap<String, Value> {
    let mut args = strings(&["eval", "--json"]);
    args.push(format!("{}#devShells", scratch.flake()));
    args.extend(scratch.stub_inputs());
    args.extend(strings(&["--apply", SUMMARY]));
    serde_json::from_str(&run_ok(nix, &args)).expect("nix eval --json")
}

fn names(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect()
}

#[test]
fn flake_nix_parses() {
    let Some((_, nix_instantiate)) = nix() else {
        return;
    };
    let flake = workspace_root().join("flake.nix");
    run_ok(
        &nix_instantiate,
        &["--parse".to_owned(), flake.display().to_string()],
    );
}

/// Nix re-locks lazily: with flake.nix and flake.lock in agreement it needs nothing from
/// the network. Any disagreement (an input's URL, owner spelling, ref, a missing follows)
/// makes it fetch, which fails here.
#[test]
fn flake_lock_matches_flake_nix() {
    let Some((nix, _)) = nix() else { return };
    let scratch = Scratch::new("lock");
    let output = run(
        &nix,
        &[
            "flake".to_owned(),
            "lock".to_owned(),
            "--offline".to_owned(),
            "--no-update-lock-file".to_owned(),
            scratch.flake(),
        ],
    );
    assert!(
        output.status.success(),
        "flake.lock does not match flake.nix's inputs (nix wanted to re-lock):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(scratch.path("flake.lock")).expect("lock"),
        read("flake.lock"),
        "nix rewrote flake.lock"
    );
}

#[test]
fn dev_shell_evaluates_on_every_system_with_every_tool() {
    let Some((nix, _)) = nix() else { return };
    let scratch = Scratch::new("shell");

    // The flake's own check: every output of every system evaluates, devShells and
    // formatter are derivations.
    let mut check = strings(&["flake", "check"]);
    check.push(scratch.flake());
    check.extend(scratch.stub_inputs());
    run_ok(&nix, &check);

    let channel = read("rust-toolchain.toml")
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("channel in rust-toolchain.toml");

    let summary = summary(&nix, &scratch);
    assert_eq!(summary.keys().collect::<Vec<_>>(), {
        let mut systems = SYSTEMS.to_vec();
        systems.sort_unstable();
        systems
    });
    for (system, shell) in &summary {
        assert_eq!(shell["system"], system.as_str(), "{system}: built for");
        let packages = names(&shell["packages"]);
        for tool in TOOLS {
            assert!(
                packages.contains(&tool),
                "{system}: the dev shell lacks {tool}: {packages:?}"
            );
        }
        // nixos-25.11 has no jaeger: the shell must not ask for it.
        assert!(!packages.contains(&"jaeger"), "{system}: {packages:?}");

        let rust = shell["rust"].as_array().expect("rust");
        assert_eq!(rust.len(), 1, "{system}: one Rust toolchain");
        let rust = &rust[0];
        assert_eq!(
            rust["channel"], channel,
            "{system}: toolchain from rust-toolchain.toml"
        );
        for extension in ["rust-src", "rustfmt", "clippy"] {
            assert!(
                names(&rust["extensions"]).contains(&extension),
                "{system}: {extension}"
            );
        }
        for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
            assert!(
                names(&rust["targets"]).contains(&target),
                "{system}: {target}"
            );
        }

        let hook = shell["shellHook"].as_str().expect("shellHook");
        assert_eq!(hook.trim().lines().count(), 1, "one line: {hook}");
        for next in ["cargo xtask local", "cargo xtask up", "tilt up"] {
            assert!(hook.contains(next), "{system}: shellHook names {next}");
        }
        assert!(hook.contains("Alertmanager"), "{system}: {hook}");
        // The truth about Jaeger: not in this nixpkgs, so from PATH or Docker, with the
        // cluster's image.
        let jaeger = format!(
            "nixpkgs 25.11 has no Jaeger: cargo xtask local uses a jaeger on PATH, else runs \
             {} in Docker when a Docker engine answers, else says how to get it",
            cluster_jaeger_image()
        );
        assert!(hook.contains(&jaeger), "{system}: {hook}");
    }
}

/// With a nixpkgs that packages Jaeger (newer than 25.11), the shell takes it.
#[test]
fn dev_shell_takes_jaeger_when_nixpkgs_has_it() {
    let Some((nix, _)) = nix() else { return };
    let scratch = Scratch::new("jaeger");
    std::fs::write(
        scratch.path("stubs/nixpkgs/optional-packages.nix"),
        "[ \"jaeger\" ]\n",
    )
    .expect("write");
    for (system, shell) in summary(&nix, &scratch) {
        assert!(
            names(&shell["packages"]).contains(&"jaeger"),
            "{system}: {shell}"
        );
        let hook = shell["shellHook"].as_str().expect("hook");
        assert!(hook.contains(", Jaeger"), "{system}: {hook}");
        assert!(!hook.contains("has no Jaeger"), "{system}: {hook}");
    }
}

/// The stubs are strict: a misspelt package is an evaluation error, not a silent gap.
#[test]
fn a_misspelt_package_fails_the_check() {
    let Some((nix, _)) = nix() else { return };
    let scratch = Scratch::new("typo");
    let flake = std::fs::read_to_string(scratch.path("flake.nix")).expect("flake.nix");
    assert!(
        flake.contains("pkgs.kubectl\n"),
        "flake.nix lists pkgs.kubectl"
    );
    std::fs::write(
        scratch.path("flake.nix"),
        flake.replace("pkgs.kubectl\n", "pkgs.kubectll\n"),
    )
    .expect("write");
    let mut check = strings(&["flake", "check"]);
    check.push(scratch.flake());
    check.extend(scratch.stub_inputs());
    let output = run(&nix, &check);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a misspelt package passed");
    assert!(stderr.contains("kubectll"), "{stderr}");
}
