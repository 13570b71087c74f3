//! `cargo xtask bench`: how fast and how small, measured side by side in one run, on
//! this machine, and written to docs/benchmarks.md.
//!
//! Everything measured is a release build in its own process: the seven services, the
//! hello-world baseline and the OTLP receiver (the `bench-server` crate) and this
//! project's load generator (the release xtask binary), beside oha and wrk.

mod footprint;
mod load;
mod machine;
mod mesh;
mod report;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use loadgen::Endpoint;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader},
    process::Child,
};

use crate::{
    cluster::{
        Runner,
        images::{build_binary, build_image},
    },
    cmd::{Cmd, find_on_path},
    paths::{BENCH_STATE, BENCH_TOOLS, in_repo, workspace_root},
    supervisor::terminate,
};
use load::{Load, Shape};
use machine::Machine;
use mesh::BenchMesh;
use report::{Build, ImageFigures, MeshRun, Results, Telemetry};
pub use report::{RESULTS_END, RESULTS_START, splice};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask bench                 # the full run (about 10 minutes with the builds), into docs/benchmarks.md
  cargo xtask bench --quick         # 3 s per run: checks the suite works, figures are rough
  cargo xtask bench --quick --profile dev   # no release build: only checks the suite works
  cargo xtask bench --output /tmp/b.md --connections 128

What runs: the release builds of the services, a bare axum hello-world, an OTLP/gRPC
receiver that counts spans, and the load generators (this project's `xtask traffic`,
oha, wrk), all on 127.0.0.1. oha is installed into target/bench-tools when missing;
wrk is used when on PATH (`nix develop` has both). Figures are for this machine only:
compare the ratios, measured in the same run, not absolute numbers across machines.")]
pub struct BenchArgs {
    /// Short runs (3 s each, 5 starts) that check the suite works; the figures are rough
    #[arg(long)]
    pub quick: bool,

    /// Seconds per load run [default: 30, or 3 with --quick]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: Option<u64>,

    /// Keep-alive connections of every load generator
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: u32,

    /// The Markdown file whose results section is replaced (the text around it is kept)
    #[arg(long, value_name = "FILE", default_value = "docs/benchmarks.md")]
    pub output: PathBuf,

    /// Do not install oha when it is missing (skip it, with a note)
    #[arg(long)]
    pub no_install: bool,

    /// Cargo profile the services and the project's generator are built with. `dev`
    /// reuses the debug build instead of minutes of release compiling: figures that show
    /// the suite runs, and nothing of the release build's speed (the test suite uses it)
    #[arg(long, value_name = "PROFILE", default_value = "release")]
    pub profile: String,
}

/// The path the bench servers' hello-world answers on, the one the load generators use.
const HELLO_PATH: &str = contract::endpoints::DATA;

/// The endpoints measured on the mesh, in this order.
const MESH_ENDPOINTS: [Endpoint; 2] = [Endpoint::Action, Endpoint::Data];

impl BenchArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let work = in_repo(BENCH_STATE);
        let output = output_file(&self.output)?;
        let shape = Shape {
            connections: self.connections,
            duration: Duration::from_secs(self.duration.unwrap_or(if self.quick { 3 } else { 30 })),
        };
        let machine = Machine::detect();
        eprintln!("bench: {machine}");
        step(&format!(
            "building the services, xtask and the bench servers with the `{}` profile",
            self.profile
        ));
        let binaries = build(&self.profile)?;
        let graph = mesh::write_zero_work_topology(&work)?;

        let (mut otlp, otlp_address) = start_server(&binaries.bench_server, "otlp", &work).await?;
        let otlp_endpoint = format!("http://{otlp_address}");
        let generators = self
            .generators_against_hello(&binaries, &work, &shape, machine.cores)
            .await?;
        let meshes = MeshBench {
            xtask: &binaries.xtask,
            graph: &graph,
            otlp_endpoint: &otlp_endpoint,
            work: &work,
            shape: &shape,
        };
        let mesh = meshes.measure_all(&binaries.service).await?;

        let startup = meshes
            .startup_times(&binaries.service, if self.quick { 5 } else { 20 })
            .await;
        let spans_received = stop_otlp(&mut otlp).await?;

        step("incremental rebuild of the image's binary, and the image");
        let image = image_figures().map_err(|e| format!("{e:#}"));

        let results = Results {
            machine,
            profile: self.profile.clone(),
            command: self.command_line(),
            revision: revision(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            shape,
            generators,
            mesh: mesh.runs,
            spans_received,
            memory_idle: mesh.memory_idle,
            memory_loaded: mesh.memory_loaded,
            startup,
            image,
            image_runs_skipped: mesh.image_runs_skipped,
        };
        write_results(&output, &results.markdown())
    }

    async fn generators_against_hello(
        &self,
        binaries: &Binaries,
        work: &Path,
        shape: &Shape,
        cores: usize,
    ) -> anyhow::Result<Vec<(&'static str, Result<Load, String>)>> {
        let oha = load::find_or_install_oha(&in_repo(BENCH_TOOLS), !self.no_install)
            .map_err(|e| format!("{e:#}"));
        let wrk = load::find_wrk().map_err(|e| format!("{e:#}"));

        let (mut hello, address) = start_server(&binaries.bench_server, "hello", work).await?;
        let url = format!("http://{address}{HELLO_PATH}");
        let mut generators = Vec::new();
        step("xtask traffic -> hello-world");
        generators.push((
            "xtask traffic",
            load::traffic(
                &binaries.xtask,
                &address,
                Endpoint::Data,
                shape,
                &work.join("hello-traffic.json"),
            )
            .map_err(|e| format!("{e:#}")),
        ));
        step("oha -> hello-world");
        generators.push((
            "oha",
            oha.and_then(|oha| load::oha(&oha, &url, shape).map_err(|e| format!("{e:#}"))),
        ));
        step("wrk -> hello-world");
        generators.push((
            "wrk",
            wrk.and_then(|wrk| load::wrk(&wrk, &url, shape, cores).map_err(|e| format!("{e:#}"))),
        ));
        terminate(&hello);
        let _ = hello.wait().await;
        if let Err(error) = &generators[0].1 {
            bail!("the project's own generator failed against the hello-world: {error}");
        }
        Ok(generators)
    }

    fn command_line(&self) -> String {
        let mut line = String::from("cargo xtask bench");
        if self.quick {
            line.push_str(" --quick");
        }
        if let Some(duration) = self.duration {
            line.push_str(&format!(" --duration {duration}"));
        }
        if self.connections != 64 {
            line.push_str(&format!(" --connections {}", self.connections));
        }
        if self.profile != "release" {
            line.push_str(&format!(" --profile {}", self.profile));
        }
        line
    }
}

fn step(what: &str) {
    eprintln!("bench: {what}");
}

/// `--output` made absolute, its directory created: an unwritable output fails now, not
/// after minutes of measuring.
fn output_file(output: &Path) -> anyhow::Result<PathBuf> {
    let output = std::path::absolute(output)?;
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for --output", dir.display()))?;
    }
    Ok(output)
}

/// Prints the results and puts them into `output` between the markers, keeping the rest.
fn write_results(output: &Path, markdown: &str) -> anyhow::Result<()> {
    println!("{markdown}");
    let existing = std::fs::read_to_string(output).ok();
    std::fs::write(output, splice(existing.as_deref(), markdown))
        .with_context(|| format!("writing --output {}", output.display()))?;
    eprintln!("bench: results written to {}", output.display());
    Ok(())
}

struct Binaries {
    service: PathBuf,
    xtask: PathBuf,
    /// The hello-world and the OTLP receiver (`xtask/bench-server`).
    bench_server: PathBuf,
}

/// Builds the services, xtask (the project's load generator) and the bench servers with
/// Cargo's `profile`, for this machine. One cargo invocation: the three share their
/// dependencies' features, so each dependency compiles once for the run. The bench
/// servers are a crate of their own so that the gRPC server and the OTLP protocol code
/// are compiled here only, never by the `cargo xtask` that every command builds first.
fn build(profile: &str) -> anyhow::Result<Binaries> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Cmd::new(cargo, format!("building the `{profile}` binaries"))
        .args(["build", "--profile", profile])
        .args(["--package", "mock-service", "--package", "xtask"])
        .args(["--package", "bench-server"])
        .current_dir(workspace_root())
        .run()?;
    let out = crate::paths::target_dir().join(profile_dir(profile));
    Ok(Binaries {
        service: out.join("mock-service"),
        xtask: out.join("xtask"),
        bench_server: out.join("bench-server"),
    })
}

/// The directory of `target/` that Cargo writes a profile's binaries to.
fn profile_dir(profile: &str) -> &str {
    match profile {
        "dev" | "test" => "debug",
        "bench" => "release",
        custom => custom,
    }
}

/// What every mesh of the run shares.
struct MeshBench<'a> {
    xtask: &'a Path,
    graph: &'a mesh::ZeroWork,
    otlp_endpoint: &'a str,
    work: &'a Path,
    shape: &'a Shape,
}

/// Every mesh of the run: the runs, the memory of the first (span export on), and why the
/// image's binary was not measured, if it was not.
struct MeshFigures {
    runs: Vec<MeshRun>,
    memory_idle: Vec<(String, footprint::Memory)>,
    memory_loaded: Vec<(String, footprint::Memory)>,
    image_runs_skipped: Option<String>,
}

/// One mesh: its runs, and each service's memory before and after them.
struct MeshMeasurement {
    runs: Vec<MeshRun>,
    memory_idle: Vec<(String, footprint::Memory)>,
    memory_loaded: Vec<(String, footprint::Memory)>,
}

impl MeshBench<'_> {
    /// The host build of `service` with each telemetry setting, then the image's binary.
    async fn measure_all(&self, service: &Path) -> anyhow::Result<MeshFigures> {
        step("the mesh, span export on (idle memory, then load)");
        let exporting = self
            .measure(service, Build::Host, Telemetry::Spans, &MESH_ENDPOINTS)
            .await?;
        let mut runs: Vec<MeshRun> = exporting.runs;
        for telemetry in [
            Telemetry::SpansWithoutExemplars,
            Telemetry::IdsOnly,
            Telemetry::TracingOff,
        ] {
            step(&format!("the mesh, {}", telemetry.describe()));
            let measured = self
                .measure(service, Build::Host, telemetry, &MESH_ENDPOINTS)
                .await?;
            runs.extend(measured.runs);
        }
        step("the image's static (musl) binary: the mesh, span export on, and tracing off");
        let image_runs_skipped = match self.measure_image().await {
            Ok(image_runs) => {
                runs.extend(image_runs);
                None
            }
            Err(why) => {
                let why = format!("{why:#}");
                eprintln!("bench: not measuring the image's binary: {why}");
                Some(why)
            }
        };
        Ok(MeshFigures {
            runs,
            memory_idle: exporting.memory_idle,
            memory_loaded: exporting.memory_loaded,
            image_runs_skipped,
        })
    }

    /// Starts the mesh of `binary`, drives each of `endpoints` at full speed one after
    /// the other, and stops it.
    async fn measure(
        &self,
        binary: &Path,
        build: Build,
        telemetry: Telemetry,
        endpoints: &[Endpoint],
    ) -> anyhow::Result<MeshMeasurement> {
        let label = format!(
            "{}-{}",
            if build == Build::Image {
                "image"
            } else {
                "host"
            },
            telemetry.label()
        );
        let logs = self.work.join("logs").join(&label);
        let mesh =
            BenchMesh::start(binary, self.graph, telemetry, self.otlp_endpoint, &logs).await?;
        // A moment to settle, so that "idle" comes after start-up's allocations.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let memory_idle = mesh.memory()?;
        let runs = endpoints
            .iter()
            .map(|endpoint| {
                let json = self
                    .work
                    .join(format!("mesh-{}-{label}.json", endpoint.key()));
                let load = load::traffic(self.xtask, &mesh.gateway, *endpoint, self.shape, &json)?;
                Ok(MeshRun {
                    build,
                    telemetry,
                    endpoint: *endpoint,
                    load,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>();
        let memory_loaded = mesh.memory();
        mesh.stop().await;
        Ok(MeshMeasurement {
            runs: runs?,
            memory_idle,
            memory_loaded: memory_loaded?,
        })
    }

    /// How long `service` takes to be ready, over `starts` starts.
    async fn startup_times(&self, service: &Path, starts: usize) -> Result<Vec<Duration>, String> {
        step(&format!("start-up time, {starts} starts"));
        footprint::startup_times(
            service,
            &self.graph.file,
            self.otlp_endpoint,
            &self.work.join("logs").join("startup.log"),
            starts,
        )
        .await
        .map_err(|e| format!("{e:#}"))
    }

    /// The image's static binary, POST /api/action with span export on and tracing off.
    async fn measure_image(&self) -> anyhow::Result<Vec<MeshRun>> {
        let binary = build_binary(Runner { dry_run: false })?;
        let mut runs = Vec::new();
        for telemetry in [Telemetry::Spans, Telemetry::TracingOff] {
            let measured = self
                .measure(&binary, Build::Image, telemetry, &MESH_ENDPOINTS[..1])
                .await?;
            runs.extend(measured.runs);
        }
        Ok(runs)
    }
}

/// Starts `bench-server KIND` and reads the address from its first line.
async fn start_server(
    bench_server: &Path,
    kind: &str,
    work: &Path,
) -> anyhow::Result<(Child, String)> {
    let mut child = Cmd::new(bench_server, format!("starting the {kind} server"))
        .arg(kind)
        .current_dir(work)
        .spawn_piped()?;
    let stdout = child.stdout.as_mut().context("no stdout")?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .with_context(|| format!("the {kind} server did not start within 10 s"))??;
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("the {kind} server printed `{}`", line.trim()))?
        .to_owned();
    Ok((child, address))
}

/// Stops the OTLP receiver and returns how many spans it received.
async fn stop_otlp(otlp: &mut Child) -> anyhow::Result<u64> {
    terminate(otlp);
    let mut rest = String::new();
    if let Some(stdout) = otlp.stdout.as_mut() {
        tokio::time::timeout(Duration::from_secs(10), stdout.read_to_string(&mut rest))
            .await
            .context("the OTLP receiver did not stop within 10 s")??;
    }
    let _ = otlp.wait().await;
    rest.lines()
        .find_map(|line| line.strip_prefix("spans "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("the OTLP receiver did not report its span count: `{rest}`"))
}

/// The inner loop Tilt depends on: the image's binary (built once already) rebuilt after
/// touching a handler (timed), then the image and its size when a Docker engine answers.
fn image_figures() -> anyhow::Result<ImageFigures> {
    let runner = Runner { dry_run: false };
    let handler = in_repo("services/mock-service/src/app.rs");
    std::fs::File::options()
        .append(true)
        .open(&handler)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()))
        .with_context(|| format!("touching {}", handler.display()))?;
    let started = Instant::now();
    build_binary(runner)?;
    let rebuild = started.elapsed();
    let docker_answers = find_on_path("docker").is_some()
        && Cmd::new("docker", "asking the Docker engine")
            .arg("info")
            .succeeds()?;
    let image_bytes = docker_answers.then(|| {
        build_image(runner)
            .and_then(|reference| {
                Cmd::new("docker", "reading the image's size")
                    .args(["image", "inspect", "--format", "{{.Size}}", &reference])
                    .read()
            })
            .and_then(|size| Ok(size.parse::<u64>()?))
            .map_err(|e| format!("{e:#}"))
    });
    Ok(ImageFigures {
        rebuild,
        image_bytes,
    })
}

fn revision() -> String {
    let git = |args: &[&str]| {
        Cmd::new("git", "reading the revision")
            .args(args)
            .current_dir(workspace_root())
            .read()
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Ok(hash) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_ok_and(|s| !s.is_empty());
            if dirty {
                format!("{hash} (with local changes)")
            } else {
                hash
            }
        }
        Err(_) => "unknown".to_owned(),
    }
}
