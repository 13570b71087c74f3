//! The four demo scenarios as one table: for each, its traffic preset, its faults, how
//! long it runs, what to watch, and (as data next to the plan) what must be seen in each
//! phase of `cargo xtask scenario NAME --verify`.

use contract::admin::{FaultSpec, Latency};
use serde::Serialize;

/// One demo: what it does to the mesh and what it must show.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// The name on the command line (`cargo xtask scenario NAME`) and on Tilt's buttons.
    pub name: &'static str,
    /// One line: what the scenario does.
    pub summary: &'static str,
    /// The traffic it sends without `--verify`: the name of a preset of
    /// `cargo xtask traffic --preset`.
    pub preset: &'static str,
    /// The faults it sets for its whole run, per service.
    pub faults: Vec<Fault>,
    /// In the cluster: this service runs with one replica meanwhile.
    pub scale_to_one: Option<&'static str>,
    /// How long its traffic runs without `--verify`, in seconds.
    pub duration_secs: u64,
    /// Where to look, and what shows there.
    pub watch: &'static str,
    /// `--verify`: the open-model rates of its phases.
    pub rates: Rates,
    /// `--verify`: what must be seen, phase by phase.
    pub expectations: Vec<Expectation>,
}

/// A fault a scenario sets on one service.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fault {
    pub service: &'static str,
    pub spec: FaultSpec,
}

/// Requests per second of `--verify`'s phases: baseline and recovery at `steady`, the
/// fault phase at `fault` (higher for a load spike, the same otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Rates {
    pub steady: f64,
    pub fault: f64,
}

/// The three phases of `--verify`, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Baseline,
    Fault,
    Recovery,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Baseline, Phase::Fault, Phase::Recovery];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Fault => "fault",
            Phase::Recovery => "recovery",
        }
    }
}

/// One thing that must be seen at the end of a phase.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expectation {
    pub phase: Phase,
    pub expect: Expect,
    /// The window of the signal behind it, in seconds: a phase shorter than this still
    /// sees the phase before it (a recovery still sees the fault), so the check says
    /// "not checked" instead of a verdict; 0 for a check any phase length can decide.
    /// An alert that must have resolved takes its window from its rule instead.
    pub window_secs: u64,
}

/// What is checked, and against which tool.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Expect {
    /// The alert is pending or firing with these labels (Prometheus's `/api/v1/alerts`,
    /// and Alertmanager's `/api/v2/alerts` once it fires).
    AlertActive {
        alert: &'static str,
        labels: Vec<(&'static str, &'static str)>,
    },
    /// The alert is neither pending nor firing with these labels (it never started, or
    /// it resolved).
    AlertInactive {
        alert: &'static str,
        labels: Vec<(&'static str, &'static str)>,
    },
    /// A dashboard panel's own query (`$service` set to `service`), through Prometheus's
    /// `/api/v1/query`: its largest value is at least `min` and at most `max`.
    Panel {
        /// The file under `grafana/dashboards/`.
        dashboard: &'static str,
        /// The panel's title, and the target's `refId` in it.
        panel: &'static str,
        ref_id: &'static str,
        service: Option<&'static str>,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// The dashboards' fault annotation query names this service.
    FaultAnnotation { service: &'static str },
}

/// Every scenario, in the order the help and Tilt list them.
pub fn all() -> Vec<Scenario> {
    vec![normal(), spike(), errors(), degradation()]
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|scenario| scenario.name == name)
}

/// The names, in table order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|scenario| scenario.name).collect()
}

const OVERVIEW: &str = "overview.json";
const SERVICE: &str = "service.json";
const GATEWAY: &str = "gateway-service";

/// An expectation any phase length can decide.
fn at(phase: Phase, expect: Expect) -> Expectation {
    Expectation {
        phase,
        expect,
        window_secs: 0,
    }
}

/// An expectation about a signal over a window of `window_secs`.
fn over(phase: Phase, window_secs: u64, expect: Expect) -> Expectation {
    Expectation {
        phase,
        expect,
        window_secs,
    }
}

/// The window of the mesh's alert rules and of the panels' latency queries (`[5m]`).
const FIVE_MINUTES: u64 = 300;
/// The window of the panels' rate queries (`[1m]`, Grafana's `$__rate_interval`).
const ONE_MINUTE: u64 = 60;

/// The service dashboard's error ratio of `service`, bounded.
fn error_ratio(service: &'static str, min: Option<f64>, max: Option<f64>) -> Expect {
    Expect::Panel {
        dashboard: SERVICE,
        panel: "Error ratio",
        ref_id: "A",
        service: Some(service),
        min,
        max,
    }
}

/// The service dashboard's p95 (seconds) of `service`, bounded.
fn p95(service: &'static str, min: Option<f64>, max: Option<f64>) -> Expect {
    Expect::Panel {
        dashboard: SERVICE,
        panel: "Latency p50 / p95 / p99",
        ref_id: "B",
        service: Some(service),
        min,
        max,
    }
}

fn alert(name: &'static str, service: &'static str, active: bool) -> Expect {
    let labels = vec![("service_name", service)];
    if active {
        Expect::AlertActive {
            alert: name,
            labels,
        }
    } else {
        Expect::AlertInactive {
            alert: name,
            labels,
        }
    }
}

/// True in every phase of a scenario without faults: traffic arrives, the gateway's own
/// errors stay at /api/error's designed share, no error alert starts.
fn steady_in(phase: Phase) -> Vec<Expectation> {
    vec![
        at(
            phase,
            Expect::Panel {
                dashboard: OVERVIEW,
                panel: "Request rate by service",
                ref_id: "A",
                service: None,
                min: Some(0.5),
                max: None,
            },
        ),
        at(phase, alert("ServiceHighErrorRatio", GATEWAY, false)),
    ]
}

fn normal() -> Scenario {
    Scenario {
        name: "normal",
        summary: "steady traffic, the default mix, no fault",
        preset: "normal",
        faults: vec![],
        scale_to_one: None,
        duration_secs: 180,
        watch: "Grafana, Mesh / Overview: steady request rate by service; the gateway's p95 \
                held up by /api/slow (0.5 to 2 s by design) while the services behind it stay \
                fast; a flat error line (the designed /api/error). Jaeger: service \
                gateway-service, a POST /api/action trace has ten server spans over seven services.",
        rates: Rates {
            steady: 10.0,
            fault: 10.0,
        },
        expectations: Phase::ALL.into_iter().flat_map(steady_in).collect(),
    }
}

fn spike() -> Scenario {
    let mut expectations: Vec<Expectation> = Phase::ALL.into_iter().flat_map(steady_in).collect();
    expectations.push(at(
        Phase::Fault,
        Expect::Panel {
            dashboard: OVERVIEW,
            panel: "Request rate by service",
            ref_id: "A",
            service: None,
            min: Some(20.0),
            max: None,
        },
    ));
    Scenario {
        name: "spike",
        summary: "a burst: 200 concurrent POST /api/action",
        preset: "spike",
        faults: vec![],
        scale_to_one: None,
        duration_secs: 120,
        watch: "Grafana, Mesh / Overview: a spike in request rate and in p95/p99 latency; \
                Mesh / Service (gateway-service): CPU climbs. Jaeger: the spike's traces queue \
                behind each other (long gaps before the first child span).",
        rates: Rates {
            steady: 10.0,
            fault: 40.0,
        },
        expectations,
    }
}

fn errors() -> Scenario {
    const FAULTED: &str = "payment-service";
    Scenario {
        name: "errors",
        summary: "payment-service fails 30% of its requests",
        preset: "normal",
        faults: vec![Fault {
            service: FAULTED,
            spec: FaultSpec {
                error_rate: Some(0.3),
                error_status: Some(500),
                ..FaultSpec::default()
            },
        }],
        scale_to_one: None,
        duration_secs: 60,
        watch: "Grafana, Mesh / Overview: error rate and percentage rise; Mesh / Service \
                (payment-service): 500s on /api/action and fault_injections_total; order-service \
                and gateway-service answer 502 (Errors by endpoint and status). Jaeger: red \
                payment-service spans deep in POST /api/action traces, their parents red too.",
        rates: Rates {
            steady: 10.0,
            fault: 10.0,
        },
        expectations: vec![
            at(Phase::Baseline, error_ratio(FAULTED, None, Some(0.05))),
            at(
                Phase::Baseline,
                alert("ServiceHighErrorRatio", FAULTED, false),
            ),
            // Above ServiceHighErrorRatio's 5% (probes and scrapes dilute the 30%).
            at(Phase::Fault, error_ratio(FAULTED, Some(0.05), None)),
            at(Phase::Fault, Expect::FaultAnnotation { service: FAULTED }),
            at(Phase::Fault, alert("ServiceHighErrorRatio", FAULTED, true)),
            // The burn-rate alert's short window (5m) must lie in the fault.
            over(
                Phase::Fault,
                FIVE_MINUTES,
                Expect::AlertActive {
                    alert: "GatewayErrorBudgetBurn",
                    labels: vec![("slo", "gateway-availability")],
                },
            ),
            over(
                Phase::Recovery,
                ONE_MINUTE,
                error_ratio(FAULTED, None, Some(0.05)),
            ),
            // Its window is the rule's own, asked from Prometheus.
            at(
                Phase::Recovery,
                alert("ServiceHighErrorRatio", FAULTED, false),
            ),
        ],
    }
}

fn degradation() -> Scenario {
    const FAULTED: &str = "inventory-service";
    Scenario {
        name: "degradation",
        summary: "inventory-service 200 to 800 ms slower (in the cluster: one replica)",
        preset: "normal",
        faults: vec![Fault {
            service: FAULTED,
            spec: FaultSpec {
                latency_ms: Some(Latency::Between([200, 800])),
                ..FaultSpec::default()
            },
        }],
        scale_to_one: Some(FAULTED),
        duration_secs: 120,
        watch: "Grafana, Mesh / Overview: p95 of product-service and gateway-service climbs; \
                Mesh / Inter-service: client-side latency of product-service -> inventory-service \
                rises, then gateway-service -> product-service. Jaeger: long inventory-service \
                spans (event `fault injected: added latency`) under every product-service span.",
        rates: Rates {
            steady: 10.0,
            fault: 10.0,
        },
        expectations: vec![
            at(Phase::Baseline, p95(FAULTED, None, Some(0.1))),
            at(
                Phase::Baseline,
                alert("ServiceHighLatencyP95", FAULTED, false),
            ),
            at(Phase::Fault, p95(FAULTED, Some(0.2), None)),
            at(Phase::Fault, Expect::FaultAnnotation { service: FAULTED }),
            at(Phase::Fault, alert("ServiceHighLatencyP95", FAULTED, true)),
            // The burn-rate alert's short window (5m) must lie in the fault.
            over(
                Phase::Fault,
                FIVE_MINUTES,
                Expect::AlertActive {
                    alert: "GatewayErrorBudgetBurn",
                    labels: vec![("slo", "gateway-latency")],
                },
            ),
            over(Phase::Recovery, FIVE_MINUTES, p95(FAULTED, None, Some(0.1))),
            at(
                Phase::Recovery,
                alert("ServiceHighLatencyP95", FAULTED, false),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_find_finds_each() {
        let names = names();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        for name in names {
            assert_eq!(find(name).map(|s| s.name), Some(name));
        }
        assert_eq!(find("chaotic"), None);
    }

    /// A scenario with a fault expects to see it during the fault phase, and every
    /// expectation about a faulted service names one the scenario faults.
    #[test]
    fn every_fault_is_expected_to_show() {
        for scenario in all() {
            for fault in &scenario.faults {
                let annotated = scenario.expectations.iter().any(|e| {
                    e.phase == Phase::Fault
                        && e.expect
                            == Expect::FaultAnnotation {
                                service: fault.service,
                            }
                });
                assert!(
                    annotated,
                    "{}: no annotation of {}",
                    scenario.name, fault.service
                );
            }
            assert!(scenario.rates.steady > 0.0 && scenario.rates.fault >= scenario.rates.steady);
        }
    }
}
