//! Every figure of one run, as Markdown tables (one function per section, each figure
//! beside its target), and their place in docs/benchmarks.md (between two markers; the
//! hand-written text around them is kept).

use std::time::Duration;

use contract::topology::{Route, Topology};
use loadgen::Endpoint;

use super::{
    HELLO_PATH, MESH_ENDPOINTS,
    footprint::Memory,
    load::{Load, Shape},
    machine::Machine,
};

pub const RESULTS_START: &str =
    "<!-- results of `cargo xtask bench`: each run replaces everything down to the end marker -->";
pub const RESULTS_END: &str = "<!-- end of the results of `cargo xtask bench` -->";

const MIB: f64 = 1024.0;

/// Every figure of one run.
pub struct Results {
    pub machine: Machine,
    /// The Cargo profile of the host build (`--profile`).
    pub profile: String,
    pub command: String,
    pub revision: String,
    pub date: String,
    pub shape: Shape,
    /// Each generator against the hello-world, or why it was skipped.
    pub generators: Vec<(&'static str, Result<Load, String>)>,
    pub mesh: Vec<MeshRun>,
    pub spans_received: u64,
    pub memory_idle: Vec<(String, Memory)>,
    pub memory_loaded: Vec<(String, Memory)>,
    pub startup: Result<Vec<Duration>, String>,
    pub image: Result<ImageFigures, String>,
    /// Why the image's binary was not run as a mesh, if it was not.
    pub image_runs_skipped: Option<String>,
}

/// One endpoint driven at full speed through one mesh.
pub struct MeshRun {
    pub build: Build,
    pub telemetry: Telemetry,
    pub endpoint: Endpoint,
    pub load: Load,
}

/// Which build of the services ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Built for this machine (glibc) with the run's Cargo profile, `release` unless
    /// `--profile` says otherwise: what `cargo xtask local --release` runs.
    Host,
    /// The image's static binary (musl): what the cluster runs.
    Image,
}

/// What the services do with spans besides their metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Telemetry {
    /// Spans to the OTLP receiver, and exemplars on the latency histograms: the default.
    Spans,
    /// Spans, but no exemplars (`OTEL_METRICS_EXEMPLAR_FILTER=always_off`).
    SpansWithoutExemplars,
    /// Spans made, sampled and propagated, with exemplars, but exported nowhere
    /// (`OTEL_TRACES_EXPORTER=none`): trace ids without a backend, what `cargo xtask
    /// local` runs when nothing receives spans.
    IdsOnly,
    /// Tracing off (`OTEL_SDK_DISABLED=true`): no spans, no trace ids, no exemplars;
    /// metrics still on. The baseline the others are compared with.
    TracingOff,
}

impl Telemetry {
    /// Whether spans are exported (to the run's OTLP receiver).
    pub fn exported(self) -> bool {
        matches!(self, Telemetry::Spans | Telemetry::SpansWithoutExemplars)
    }

    /// Whether the latency histograms carry exemplars.
    pub fn exemplars(self) -> bool {
        matches!(self, Telemetry::Spans | Telemetry::IdsOnly)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Telemetry::Spans => "span export on",
            Telemetry::SpansWithoutExemplars => {
                "span export on, exemplars off (OTEL_METRICS_EXEMPLAR_FILTER=always_off)"
            }
            Telemetry::IdsOnly => "trace ids, no span export (OTEL_TRACES_EXPORTER=none)",
            Telemetry::TracingOff => "tracing off (OTEL_SDK_DISABLED=true)",
        }
    }

    /// For file names.
    pub fn label(self) -> &'static str {
        match self {
            Telemetry::Spans => "spans-on",
            Telemetry::SpansWithoutExemplars => "spans-on-exemplars-off",
            Telemetry::IdsOnly => "ids-only",
            Telemetry::TracingOff => "tracing-off",
        }
    }
}

pub struct ImageFigures {
    pub rebuild: Duration,
    pub image_bytes: Option<Result<u64, String>>,
}

/// `existing` with its results section replaced by `results` (appended when it has none;
/// a new file when there is none).
pub fn splice(existing: Option<&str>, results: &str) -> String {
    let block = format!("{RESULTS_START}\n{}\n{RESULTS_END}\n", results.trim_end());
    let Some(existing) = existing else {
        return format!("# Benchmarks\n\n{block}");
    };
    match (existing.find(RESULTS_START), existing.find(RESULTS_END)) {
        (Some(start), Some(end)) if start < end => format!(
            "{}{block}{}",
            &existing[..start],
            existing[end + RESULTS_END.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n\n{block}", existing.trim_end()),
    }
}

/// HTTP exchanges one request to `route` at the gateway causes, on average: its own,
/// plus each call's weighted by its probability.
pub fn exchanges_per_request(topology: &Topology, service: &str, route: Route) -> f64 {
    let Some(service) = topology.service(service) else {
        return 0.0;
    };
    1.0 + service
        .plan(route)
        .calls
        .iter()
        .map(|call| call.probability * exchanges_per_request(topology, &call.to, call.route))
        .sum::<f64>()
}

/// [`exchanges_per_request`] at the built-in graph's gateway, for the route `endpoint` is.
fn exchanges_at_gateway(endpoint: Endpoint) -> f64 {
    Route::ALL
        .into_iter()
        .find(|route| route.path() == endpoint.path())
        .map_or(f64::NAN, |route| {
            exchanges_per_request(&Topology::built_in(), "gateway-service", route)
        })
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// A reason on one line, for a table cell or a sentence.
fn one_line(why: &str) -> String {
    why.replace('\n', " ")
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A Markdown table: a header row, the alignment row, then `rows`.
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let cells: Vec<&str> = cells.collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&mut columns.iter().map(|(name, _)| *name));
    let alignment: Vec<&str> = columns
        .iter()
        .map(|(_, align)| match align {
            Align::Left => "---",
            Align::Right => "---:",
        })
        .collect();
    out.push_str(&format!("|{}|\n", alignment.join("|")));
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A target, what was measured, and whether it is met.
struct Verdict {
    target: String,
    measured: String,
    verdict: String,
}

/// The targets of a section, after a blank line.
fn verdicts(rows: &[Verdict]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.target.clone(),
                row.measured.clone(),
                row.verdict.clone(),
            ]
        })
        .collect();
    let columns = [
        ("Target", Align::Left),
        ("Measured", Align::Right),
        ("", Align::Left),
    ];
    format!("\n{}", table(&columns, &rows))
}

impl Results {
    pub fn markdown(&self) -> String {
        [
            self.heading(),
            self.mesh_throughput(),
            self.image_mesh(),
            self.telemetry_overhead(),
            self.footprint(),
            self.load_generators(),
            self.image_and_inner_loop(),
        ]
        .concat()
    }

    fn hello_rps(&self) -> f64 {
        self.generators
            .first()
            .and_then(|(_, load)| load.as_ref().ok())
            .map_or(f64::NAN, |load| load.requests_per_second)
    }

    fn run_of(&self, build: Build, telemetry: Telemetry, endpoint: Endpoint) -> Option<&Load> {
        self.mesh
            .iter()
            .find(|run| {
                run.build == build && run.telemetry == telemetry && run.endpoint == endpoint
            })
            .map(|run| &run.load)
    }

    fn host_run(&self, telemetry: Telemetry, endpoint: Endpoint) -> Option<&Load> {
        self.run_of(Build::Host, telemetry, endpoint)
    }

    /// The share of requests per second lost to `with` against `without`, for `endpoint`.
    fn cost(&self, with: Telemetry, without: Telemetry, endpoint: Endpoint) -> Option<f64> {
        let with = self.host_run(with, endpoint)?;
        let without = self.host_run(without, endpoint)?;
        Some(1.0 - with.requests_per_second / without.requests_per_second)
    }

    /// (action rps x exchanges per action) / hello-world rps, both by `xtask traffic`.
    fn efficiency(&self, telemetry: Telemetry) -> f64 {
        self.host_run(telemetry, Endpoint::Action)
            .map_or(f64::NAN, |load| {
                load.requests_per_second * exchanges_at_gateway(Endpoint::Action)
            })
            / self.hello_rps()
    }

    fn heading(&self) -> String {
        let mut out = format!(
            "## Results\n\nProduced by `{}` at {} (revision {}).\n\n- Machine: {}\n",
            self.command, self.date, self.revision, self.machine
        );
        out.push_str(&format!(
            "- Load: {} keep-alive connections, {} s per run, at full speed (no think time). \
             Generators share the cores with what they drive.\n",
            self.shape.connections,
            self.shape.duration.as_secs()
        ));
        if self.profile != "release" {
            out.push_str(&format!(
                "- **Built with the `{}` profile, not `release`**: these figures show that the \
                 suite runs, not how fast the release build is.\n",
                self.profile
            ));
        }
        if self.shape.duration < Duration::from_secs(10) {
            out.push_str(
                "- Short runs: the figures are rough; the full run is `cargo xtask bench`.\n",
            );
        }
        out
    }

    fn mesh_throughput(&self) -> String {
        let rows: Vec<Vec<String>> = MESH_ENDPOINTS
            .into_iter()
            .filter_map(|endpoint| {
                let load = self.host_run(Telemetry::Spans, endpoint)?;
                Some(vec![
                    endpoint.to_string(),
                    format!("{:.1}", exchanges_at_gateway(endpoint)),
                    format!("{:.0}", load.requests_per_second),
                    format!("{:.2}", load.p50_ms),
                    format!("{:.2}", load.p99_ms),
                    load.failures.to_string(),
                ])
            })
            .collect();
        let columns = [
            ("Endpoint", Align::Left),
            ("HTTP exchanges per request", Align::Right),
            ("Requests/s", Align::Right),
            ("p50 ms", Align::Right),
            ("p99 ms", Align::Right),
            ("Failures", Align::Right),
        ];
        let actions = self
            .host_run(Telemetry::Spans, Endpoint::Action)
            .map_or(f64::NAN, |load| load.requests_per_second);
        let efficiency = self.efficiency(Telemetry::Spans);
        let cores = self.machine.cores;
        let targets = [
            Verdict {
                target: "at least 2,000 actions/s on 2 cores".to_owned(),
                measured: format!("{actions:.0}/s on {cores} cores"),
                verdict: if cores == 2 {
                    met(actions >= 2000.0)
                } else {
                    "not comparable"
                }
                .to_owned(),
            },
            Verdict {
                target: format!(
                    "efficiency at least 0.5: actions/s x {:.0} / hello-world req/s ({:.0})",
                    exchanges_at_gateway(Endpoint::Action),
                    self.hello_rps()
                ),
                measured: format!("{efficiency:.2}"),
                verdict: met(efficiency >= 0.5).to_owned(),
            },
        ];
        format!(
            "\n### 1. Mesh throughput\n\nThe built-in call graph with no simulated work (`work_ms` \
             removed), {} build, span export on to an OTLP/gRPC receiver, metrics on.\n\n{}{}",
            self.profile,
            table(&columns, &rows),
            verdicts(&targets)
        )
    }

    fn image_mesh(&self) -> String {
        let rows: Vec<Vec<String>> = [Telemetry::Spans, Telemetry::TracingOff]
            .into_iter()
            .filter_map(|telemetry| {
                let image = self.run_of(Build::Image, telemetry, Endpoint::Action)?;
                let host = self.host_run(telemetry, Endpoint::Action)?;
                Some(vec![
                    if telemetry.exported() {
                        "spans exported"
                    } else {
                        "off"
                    }
                    .to_owned(),
                    format!("{:.0}", image.requests_per_second),
                    format!("{:.2}", image.p50_ms),
                    format!("{:.2}", image.p99_ms),
                    image.failures.to_string(),
                    format!(
                        "{:.2}",
                        image.requests_per_second / host.requests_per_second
                    ),
                ])
            })
            .collect();
        let ratio = format!("Image / {} build", self.profile);
        let columns = [
            ("Tracing", Align::Left),
            ("Requests/s", Align::Right),
            ("p50 ms", Align::Right),
            ("p99 ms", Align::Right),
            ("Failures", Align::Right),
            (ratio.as_str(), Align::Right),
        ];
        let skipped = self
            .image_runs_skipped
            .as_deref()
            .map_or(String::new(), |why| {
                format!("\nNot measured: {}\n", one_line(why))
            });
        format!(
            "\nThe image's static binary (musl, what the kind cluster runs), the same way, POST \
             /api/action only:\n\n{}{skipped}",
            table(&columns, &rows)
        )
    }

    fn telemetry_overhead(&self) -> String {
        let rows: Vec<Vec<String>> = MESH_ENDPOINTS
            .into_iter()
            .filter_map(|endpoint| {
                let rps = |telemetry| {
                    self.host_run(telemetry, endpoint)
                        .map(|load| format!("{:.0}", load.requests_per_second))
                };
                let spans_cost = self.cost(Telemetry::Spans, Telemetry::TracingOff, endpoint)?;
                let exemplars_cost =
                    self.cost(Telemetry::Spans, Telemetry::SpansWithoutExemplars, endpoint)?;
                let ids_cost = self.cost(Telemetry::IdsOnly, Telemetry::TracingOff, endpoint)?;
                Some(vec![
                    endpoint.to_string(),
                    rps(Telemetry::Spans)?,
                    rps(Telemetry::SpansWithoutExemplars)?,
                    rps(Telemetry::IdsOnly)?,
                    rps(Telemetry::TracingOff)?,
                    percent(spans_cost),
                    met(spans_cost < 0.15).to_owned(),
                    percent(exemplars_cost),
                    percent(ids_cost),
                ])
            })
            .collect();
        let columns = [
            ("Endpoint", Align::Left),
            ("Requests/s, spans on", Align::Right),
            ("Requests/s, spans on, exemplars off", Align::Right),
            ("Requests/s, ids only, no export", Align::Right),
            ("Requests/s, tracing off", Align::Right),
            ("Fewer with spans", Align::Right),
            ("Target: under 15%", Align::Left),
            ("Fewer with exemplars", Align::Right),
            ("Fewer with ids only", Align::Right),
        ];
        format!(
            "\n### 2. Telemetry overhead\n\nThe same mesh with span export on (and exemplars on \
             the latency histograms, the default), with span export on and \
             `OTEL_METRICS_EXEMPLAR_FILTER=always_off` (no exemplars), with \
             `OTEL_TRACES_EXPORTER=none` (ids only: spans made, sampled and propagated, trace \
             ids in the headers, logs and exemplars, nothing exported), and with \
             `OTEL_SDK_DISABLED=true` (tracing off: no spans, no ids, no exemplars; metrics \
             still on). \"Fewer with spans\" and \"Fewer with ids only\" compare with tracing \
             off, \"Fewer with exemplars\" with spans on and exemplars off. Over the whole \
             run the OTLP receiver got {} spans.\n\n{}\nEfficiency with tracing off: {:.2}.\n",
            self.spans_received,
            table(&columns, &rows),
            self.efficiency(Telemetry::TracingOff)
        )
    }

    fn footprint(&self) -> String {
        let mib = |kib: u64| format!("{:.1}", kib as f64 / MIB);
        let mut rows: Vec<Vec<String>> = self
            .memory_idle
            .iter()
            .zip(&self.memory_loaded)
            .map(|((name, idle), (_, loaded))| {
                vec![
                    name.clone(),
                    mib(idle.rss_kib),
                    mib(loaded.rss_kib),
                    mib(loaded.peak_kib),
                ]
            })
            .collect();
        let sum = |memory: &[(String, Memory)], kib: fn(&Memory) -> u64| -> u64 {
            memory.iter().map(|(_, m)| kib(m)).sum()
        };
        rows.push(vec![
            "**the mesh**".to_owned(),
            mib(sum(&self.memory_idle, |m| m.rss_kib)),
            mib(sum(&self.memory_loaded, |m| m.rss_kib)),
            mib(sum(&self.memory_loaded, |m| m.peak_kib)),
        ]);
        let largest = |memory: &[(String, Memory)], kib: fn(&Memory) -> u64| -> f64 {
            memory.iter().map(|(_, m)| kib(m)).max().unwrap_or(0) as f64 / MIB
        };
        let max_idle = largest(&self.memory_idle, |m| m.rss_kib);
        let max_loaded = largest(&self.memory_loaded, |m| m.peak_kib);
        let targets = [
            Verdict {
                target: "under 10 MiB idle per service".to_owned(),
                measured: format!("largest {max_idle:.1} MiB"),
                verdict: met(max_idle < 10.0).to_owned(),
            },
            Verdict {
                target: "under 25 MiB under load per service".to_owned(),
                measured: format!("largest peak {max_loaded:.1} MiB"),
                verdict: met(max_loaded < 25.0).to_owned(),
            },
            self.startup_verdict(),
        ];
        let loaded_runs = MESH_ENDPOINTS.len() as u32;
        let columns = [
            ("Service", Align::Left),
            ("Idle MiB", Align::Right),
            ("After load MiB", Align::Right),
            ("Peak MiB", Align::Right),
        ];
        format!(
            "\n### 3. Footprint\n\nResident memory (VmRSS) of each service of the span-export \
             mesh: idle after start, and after its {} s of load above; peak is VmHWM.\n\n{}{}",
            (self.shape.duration * loaded_runs).as_secs(),
            table(&columns, &rows),
            verdicts(&targets)
        )
    }

    fn startup_verdict(&self) -> Verdict {
        let target = "start-up, exec to 200 on /ready, under 50 ms".to_owned();
        match &self.startup {
            Ok(times) => {
                let mut times = times.clone();
                times.sort();
                let median = times.get(times.len() / 2).copied().unwrap_or_default();
                let slowest = times.last().copied().unwrap_or_default();
                Verdict {
                    target,
                    measured: format!(
                        "median {:.1} ms, slowest {:.1} ms of {} starts",
                        ms(median),
                        ms(slowest),
                        times.len()
                    ),
                    verdict: met(ms(slowest) < 50.0).to_owned(),
                }
            }
            Err(why) => Verdict {
                target,
                measured: format!("not measured: {}", one_line(why)),
                verdict: String::new(),
            },
        }
    }

    fn load_generators(&self) -> String {
        let ours = self.hello_rps();
        let rows: Vec<Vec<String>> = self
            .generators
            .iter()
            .map(|(name, load)| match load {
                Ok(load) => vec![
                    (*name).to_owned(),
                    format!("{:.0}", load.requests_per_second),
                    format!("{:.3}", load.p50_ms),
                    format!("{:.3}", load.p99_ms),
                    load.failures.to_string(),
                    format!("{:.2}", ours / load.requests_per_second),
                ],
                Err(why) => {
                    let mut row = vec![(*name).to_owned(), format!("skipped: {}", one_line(why))];
                    row.resize(6, String::new());
                    row
                }
            })
            .collect();
        let targets = self.load_generator_targets(ours);
        let columns = [
            ("Generator", Align::Left),
            ("Requests/s", Align::Right),
            ("p50 ms", Align::Right),
            ("p99 ms", Align::Right),
            ("Failures", Align::Right),
            ("xtask traffic / this", Align::Right),
        ];
        format!(
            "\n### 4. Load generators\n\nEach against the same bare axum hello-world (`GET \
             {HELLO_PATH}`), one after the other, with the same connections and duration. \
             Latency is what each tool reports.\n\n{}{}",
            table(&columns, &rows),
            verdicts(&targets)
        )
    }

    /// Our rate against each peer's, as the targets say: at least oha's, within 20% of wrk.
    fn load_generator_targets(&self, ours: f64) -> Vec<Verdict> {
        // (peer, target, the share of the peer's rate that meets it)
        [
            ("oha", "at least oha's rate", 1.0),
            ("wrk", "within 20% of wrk", 0.8),
        ]
        .into_iter()
        .map(|(name, target, share)| {
            let rate = self
                .generators
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, load)| load.as_ref().ok())
                .map(|load| load.requests_per_second);
            match rate {
                Some(rate) => Verdict {
                    target: target.to_owned(),
                    measured: format!("{:.2} x {name}", ours / rate),
                    verdict: met(ours >= share * rate).to_owned(),
                },
                None => Verdict {
                    target: target.to_owned(),
                    measured: format!("{name} skipped"),
                    verdict: "not measured".to_owned(),
                },
            }
        })
        .collect()
    }

    fn image_and_inner_loop(&self) -> String {
        let body = match &self.image {
            Ok(image) => {
                let size = match &image.image_bytes {
                    Some(Ok(bytes)) => format!("{:.1} MB", *bytes as f64 / 1e6),
                    Some(Err(why)) => format!("not measured: {}", one_line(why)),
                    None => "not measured: no Docker engine answers".to_owned(),
                };
                let rows = [
                    vec![
                        "rebuild of the image's static binary after touching a handler \
                         (`cargo xtask images --binary-only`'s build)"
                            .to_owned(),
                        format!("{:.1} s", image.rebuild.as_secs_f64()),
                    ],
                    vec!["image size (`docker image inspect`)".to_owned(), size],
                ];
                table(
                    &[("Figure", Align::Left), ("Measured", Align::Right)],
                    &rows,
                )
            }
            Err(why) => format!("Not measured: {}\n", one_line(why)),
        };
        format!("\n### 5. Image and inner loop\n\n{body}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_keeps_the_text_around_the_results() {
        let first = splice(None, "figures 1");
        assert!(first.starts_with("# Benchmarks\n"));
        let edited = first.replace("# Benchmarks\n", "# Benchmarks\n\nHand notes.\n")
            + "\n## Profiling\nkept\n";
        let second = splice(Some(&edited), "figures 2\n");
        assert!(
            second.contains("Hand notes.") && second.contains("## Profiling\nkept"),
            "{second}"
        );
        assert!(
            second.contains("figures 2") && !second.contains("figures 1"),
            "{second}"
        );
        assert_eq!(second.matches(RESULTS_START).count(), 1);
        let appended = splice(Some("# Mine\n"), "figures 3");
        assert!(appended.starts_with("# Mine\n") && appended.contains("figures 3"));
    }

    #[test]
    fn exchanges_follow_the_call_graph_and_its_probabilities() {
        // POST /api/action: ten server spans in one trace (the built-in graph).
        let action = exchanges_at_gateway(Endpoint::Action);
        assert!((action - 10.0).abs() < 1e-9, "{action}");
        // GET /api/data: the gateway, then product-service and inventory-service in 70%.
        let data = exchanges_at_gateway(Endpoint::Data);
        assert!((data - 2.4).abs() < 1e-9, "{data}");
        assert!(exchanges_at_gateway(Endpoint::Health).is_nan());
    }

    #[test]
    fn tables_are_markdown() {
        let rows = [
            vec!["a".to_owned(), "1".to_owned()],
            vec!["b".to_owned(), "2".to_owned()],
        ];
        assert_eq!(
            table(&[("Name", Align::Left), ("N", Align::Right)], &rows),
            "| Name | N |\n|---|---:|\n| a | 1 |\n| b | 2 |\n"
        );
    }
}
