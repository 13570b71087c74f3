//! The results as Markdown tables, each figure beside its target, and their place in
//! docs/benchmarks.md (between two markers; the hand-written text around them is kept).

use std::{fmt::Write as _, time::Duration};

use mock_service::topology::{Route, Topology};

use super::{Build, Results, load::Load};

pub const RESULTS_START: &str =
    "<!-- results of `cargo xtask bench`: each run replaces everything down to the end marker -->";
pub const RESULTS_END: &str = "<!-- end of the results of `cargo xtask bench` -->";

const MIB: f64 = 1024.0;

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

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl Results {
    fn hello_rps(&self) -> f64 {
        self.generators
            .first()
            .and_then(|(_, load)| load.as_ref().ok())
            .map_or(f64::NAN, |load| load.requests_per_second)
    }

    fn mesh_run(&self, spans: bool, endpoint: &str) -> Option<&Load> {
        self.run_of(Build::Release, spans, endpoint)
    }

    fn run_of(&self, build: Build, spans: bool, endpoint: &str) -> Option<&Load> {
        self.mesh
            .iter()
            .find(|run| run.build == build && run.spans == spans && run.endpoint == endpoint)
            .map(|run| &run.load)
    }

    /// (action rps x exchanges per action) / hello-world rps, both by `xtask traffic`.
    pub fn efficiency(&self, spans: bool, exchanges_per_action: f64) -> f64 {
        self.mesh_run(spans, "POST /api/action")
            .map_or(f64::NAN, |load| {
                load.requests_per_second * exchanges_per_action
            })
            / self.hello_rps()
    }

    /// The share of requests per second lost to span export, for `endpoint`.
    pub fn tracing_cost(&self, endpoint: &str) -> f64 {
        match (
            self.mesh_run(true, endpoint),
            self.mesh_run(false, endpoint),
        ) {
            (Some(on), Some(off)) => 1.0 - on.requests_per_second / off.requests_per_second,
            _ => f64::NAN,
        }
    }

    pub fn markdown(&self) -> String {
        let topology = Topology::guide();
        let per_action = exchanges_per_request(&topology, "gateway-service", Route::Action);
        let per_data = exchanges_per_request(&topology, "gateway-service", Route::Data);
        let mut out = String::new();
        let w = &mut out;
        let _ = writeln!(w, "## Results\n");
        let _ = writeln!(
            w,
            "Produced by `{}` at {} (revision {}).\n",
            self.command, self.date, self.revision
        );
        let _ = writeln!(w, "- Machine: {}", self.machine);
        let _ = writeln!(
            w,
            "- Load: {} keep-alive connections, {} s per run, at full speed (no think time). \
             Generators share the cores with what they drive.",
            self.shape.connections,
            self.shape.duration.as_secs()
        );
        if self.shape.duration < Duration::from_secs(10) {
            let _ = writeln!(
                w,
                "- Short runs: the figures are rough; the full run is `cargo xtask bench`."
            );
        }

        let _ = writeln!(w, "\n### 1. Mesh throughput\n");
        let _ = writeln!(
            w,
            "The guide's call graph with no simulated work (`work_ms` removed), release build, span \
             export on to an OTLP/gRPC receiver, metrics on.\n"
        );
        let _ = writeln!(
            w,
            "| Endpoint | HTTP exchanges per request | Requests/s | p50 ms | p99 ms | Failures |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
        for (endpoint, exchanges) in [
            ("POST /api/action", per_action),
            ("GET /api/data", per_data),
        ] {
            if let Some(load) = self.mesh_run(true, endpoint) {
                let _ = writeln!(
                    w,
                    "| {endpoint} | {exchanges:.1} | {:.0} | {:.2} | {:.2} | {} |",
                    load.requests_per_second, load.p50_ms, load.p99_ms, load.failures
                );
            }
        }
        let actions = self
            .mesh_run(true, "POST /api/action")
            .map_or(f64::NAN, |l| l.requests_per_second);
        let efficiency = self.efficiency(true, per_action);
        let _ = writeln!(w, "\n| Target | Measured | |\n|---|---:|---|");
        let _ = writeln!(
            w,
            "| at least 2,000 actions/s on 2 cores | {actions:.0}/s on {} cores | {} |",
            self.machine.cores,
            if self.machine.cores == 2 {
                met(actions >= 2000.0)
            } else {
                "not comparable"
            }
        );
        let _ = writeln!(
            w,
            "| efficiency at least 0.5: actions/s x {per_action:.0} / hello-world req/s ({:.0}) | {efficiency:.2} | {} |",
            self.hello_rps(),
            met(efficiency >= 0.5)
        );

        let _ = writeln!(
            w,
            "\nThe image's static binary (musl, what the kind cluster runs), the same way, POST /api/action only:\n"
        );
        let _ = writeln!(
            w,
            "| Spans | Requests/s | p50 ms | p99 ms | Failures | Image / release build |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|");
        for spans in [true, false] {
            if let (Some(image), Some(release)) = (
                self.run_of(Build::Image, spans, "POST /api/action"),
                self.mesh_run(spans, "POST /api/action"),
            ) {
                let _ = writeln!(
                    w,
                    "| {} | {:.0} | {:.2} | {:.2} | {} | {:.2} |",
                    if spans { "on" } else { "off" },
                    image.requests_per_second,
                    image.p50_ms,
                    image.p99_ms,
                    image.failures,
                    image.requests_per_second / release.requests_per_second
                );
            }
        }
        if let Some(why) = &self.image_runs_skipped {
            let _ = writeln!(w, "\nNot measured: {}", why.replace('\n', " "));
        }

        let _ = writeln!(w, "\n### 2. Telemetry overhead\n");
        let _ = writeln!(
            w,
            "The same mesh with span export on, and with `OTEL_SDK_DISABLED=true` (no spans; \
             metrics still on). Over the whole run the OTLP receiver got {} spans.\n",
            self.spans_received
        );
        let _ = writeln!(
            w,
            "| Endpoint | Requests/s, spans on | Requests/s, spans off | Fewer with spans | Target: under 15% |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---|");
        for (_, endpoint) in super::MESH_ENDPOINTS {
            if let (Some(on), Some(off)) = (
                self.mesh_run(true, endpoint),
                self.mesh_run(false, endpoint),
            ) {
                let cost = self.tracing_cost(endpoint);
                let _ = writeln!(
                    w,
                    "| {endpoint} | {:.0} | {:.0} | {:.1}% | {} |",
                    on.requests_per_second,
                    off.requests_per_second,
                    cost * 100.0,
                    met(cost < 0.15)
                );
            }
        }
        let efficiency_off = self.efficiency(false, per_action);
        let _ = writeln!(w, "\nEfficiency with spans off: {efficiency_off:.2}.");

        let _ = writeln!(w, "\n### 3. Footprint\n");
        let _ = writeln!(
            w,
            "Resident memory (VmRSS) of each service of the span-export mesh: idle after start, and \
             after its {} s of load above; peak is VmHWM.\n",
            self.shape.duration.as_secs() * super::MESH_ENDPOINTS.len() as u64
        );
        let _ = writeln!(
            w,
            "| Service | Idle MiB | After load MiB | Peak MiB |\n|---|---:|---:|---:|"
        );
        let mut totals = [0u64; 3];
        for ((name, idle), (_, loaded)) in self.memory_idle.iter().zip(&self.memory_loaded) {
            let _ = writeln!(
                w,
                "| {name} | {:.1} | {:.1} | {:.1} |",
                idle.rss_kib as f64 / MIB,
                loaded.rss_kib as f64 / MIB,
                loaded.peak_kib as f64 / MIB
            );
            totals[0] += idle.rss_kib;
            totals[1] += loaded.rss_kib;
            totals[2] += loaded.peak_kib;
        }
        let _ = writeln!(
            w,
            "| **the mesh** | {:.1} | {:.1} | {:.1} |",
            totals[0] as f64 / MIB,
            totals[1] as f64 / MIB,
            totals[2] as f64 / MIB
        );
        let max_idle = self
            .memory_idle
            .iter()
            .map(|(_, m)| m.rss_kib)
            .max()
            .unwrap_or(0) as f64
            / MIB;
        let max_loaded = self
            .memory_loaded
            .iter()
            .map(|(_, m)| m.peak_kib)
            .max()
            .unwrap_or(0) as f64
            / MIB;
        let _ = writeln!(w, "\n| Target | Measured | |\n|---|---:|---|");
        let _ = writeln!(
            w,
            "| under 10 MiB idle per service | largest {max_idle:.1} MiB | {} |",
            met(max_idle < 10.0)
        );
        let _ = writeln!(
            w,
            "| under 25 MiB under load per service | largest peak {max_loaded:.1} MiB | {} |",
            met(max_loaded < 25.0)
        );
        match &self.startup {
            Ok(times) => {
                let mut times = times.clone();
                times.sort();
                let median = times.get(times.len() / 2).copied().unwrap_or_default();
                let slowest = times.last().copied().unwrap_or_default();
                let _ = writeln!(
                    w,
                    "| start-up, exec to 200 on /ready, under 50 ms | median {:.1} ms, slowest {:.1} ms of {} starts | {} |",
                    ms(median),
                    ms(slowest),
                    times.len(),
                    met(ms(slowest) < 50.0)
                );
            }
            Err(why) => {
                let _ = writeln!(
                    w,
                    "| start-up, exec to 200 on /ready, under 50 ms | not measured: {} | |",
                    why.replace('\n', " ")
                );
            }
        }

        let _ = writeln!(w, "\n### 4. Load generators\n");
        let _ = writeln!(
            w,
            "Each against the same bare axum hello-world (`GET {}`), one after the other, with the \
             same connections and duration. Latency is what each tool reports.\n",
            super::servers::HELLO_PATH
        );
        let _ = writeln!(
            w,
            "| Generator | Requests/s | p50 ms | p99 ms | Failures | xtask traffic / this |\n|---|---:|---:|---:|---:|---:|"
        );
        let ours = self.hello_rps();
        for (name, load) in &self.generators {
            match load {
                Ok(load) => {
                    let _ = writeln!(
                        w,
                        "| {name} | {:.0} | {:.3} | {:.3} | {} | {:.2} |",
                        load.requests_per_second,
                        load.p50_ms,
                        load.p99_ms,
                        load.failures,
                        ours / load.requests_per_second
                    );
                }
                Err(why) => {
                    let _ = writeln!(
                        w,
                        "| {name} | skipped: {} | | | | |",
                        why.replace('\n', " ")
                    );
                }
            }
        }
        let _ = writeln!(w, "\n| Target | Measured | |\n|---|---:|---|");
        // (peer, target, the share of the peer's rate that meets it)
        for (name, target, share) in [
            ("oha", "at least oha's rate", 1.0),
            ("wrk", "within 20% of wrk", 0.8),
        ] {
            let rate = self
                .generators
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, load)| load.as_ref().ok())
                .map(|load| load.requests_per_second);
            let _ = match rate {
                Some(rate) => writeln!(
                    w,
                    "| {target} | {:.2} x {name} | {} |",
                    ours / rate,
                    met(ours >= share * rate)
                ),
                None => writeln!(w, "| {target} | {name} skipped | not measured |"),
            };
        }

        let _ = writeln!(w, "\n### 5. Image and inner loop\n");
        match &self.image {
            Ok(image) => {
                let _ = writeln!(
                    w,
                    "| Figure | Measured |\n|---|---:|\n| rebuild of the image's static binary after touching a handler (`cargo xtask images --binary-only`'s build) | {:.1} s |",
                    image.rebuild.as_secs_f64()
                );
                let size = match &image.image_bytes {
                    Some(Ok(bytes)) => format!("{:.1} MB", *bytes as f64 / 1e6),
                    Some(Err(why)) => format!("not measured: {}", why.replace('\n', " ")),
                    None => "not measured: no Docker engine answers".to_owned(),
                };
                let _ = writeln!(w, "| image size (`docker image inspect`) | {size} |");
            }
            Err(why) => {
                let _ = writeln!(w, "Not measured: {}", why.replace('\n', " "));
            }
        }
        out
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
        let topology = Topology::guide();
        // POST /api/action: ten server spans in one trace (the guide's graph).
        let action = exchanges_per_request(&topology, "gateway-service", Route::Action);
        assert!((action - 10.0).abs() < 1e-9, "{action}");
        // GET /api/data: the gateway, then product-service and inventory-service in 70%.
        let data = exchanges_per_request(&topology, "gateway-service", Route::Data);
        assert!((data - 2.4).abs() < 1e-9, "{data}");
    }
}
