//! What the unit tests share: tracing with real OpenTelemetry spans on this thread, and
//! reading samples and exemplars back out of an exposition.

use std::collections::BTreeMap;

use opentelemetry::{global, trace::TracerProvider as _};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt as _;

/// Real OpenTelemetry spans (ids, sampling, W3C propagation) for the current thread
/// until the guard drops; nothing is exported. A current-thread Tokio test runs every
/// task on this thread.
pub fn traced() -> DefaultGuard {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_default(subscriber)
}

/// One line of an exposition: `name{labels} value [# {exemplar labels} value [time]]`.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub exemplar: Option<BTreeMap<String, String>>,
}

impl Sample {
    pub fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(key, value)| self.labels.get(*key).map(String::as_str) == Some(*value))
    }
}

/// Every sample line of `text`, in either format.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, exemplar) = match line.split_once(" # ") {
                Some((series, exemplar)) => (series, Some(exemplar)),
                None => (line, None),
            };
            let (name_and_labels, value) = series.rsplit_once(' ').expect("name value");
            let (name, labels) = match name_and_labels.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                None => (name_and_labels, BTreeMap::new()),
            };
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("a number"),
                exemplar: exemplar.map(|exemplar| {
                    let labels = exemplar
                        .strip_prefix('{')
                        .and_then(|rest| rest.split_once('}'))
                        .expect("exemplar labels")
                        .0;
                    parse_labels(labels)
                }),
            }
        })
        .collect()
}

/// `a="1",b="2"` (the tests' values hold no quotes or commas).
fn parse_labels(labels: &str) -> BTreeMap<String, String> {
    labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').expect("key=value");
            (key.to_owned(), value.trim_matches('"').to_owned())
        })
        .collect()
}

/// The value of the one sample `name` with these labels (among others).
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<Sample> = samples(text)
        .into_iter()
        .filter(|sample| sample.name == name && sample.has(labels))
        .collect();
    assert!(matching.len() <= 1, "several samples match: {matching:#?}");
    matching.first().map(|sample| sample.value)
}
