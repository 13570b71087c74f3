//! The learner's answer (a service and a kind of fault, checked against the mesh) and its
//! score: the service, the kind, and the time taken.

use std::time::Duration;

use contract::admin::FaultKind;
use serde::{Deserialize, Serialize};

use super::{Drill, DrillError, parse_kind};

/// "It is SERVICE, and what is wrong is KIND."
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub service: String,
    #[serde(with = "super::kind_name")]
    pub kind: FaultKind,
}

impl Answer {
    /// The answer `service kind`, refused with the list of what exists when the service
    /// is not one of `services` or the kind is not one of the contract's.
    pub fn parse(services: &[String], service: &str, kind: &str) -> Result<Answer, DrillError> {
        let service = service.trim();
        if !services.iter().any(|known| known == service) {
            return Err(DrillError::UnknownService {
                service: service.to_owned(),
                known: services.join(", "),
            });
        }
        Ok(Answer {
            service: service.to_owned(),
            kind: parse_kind(kind)?,
        })
    }

    /// An answer typed at the prompt: "SERVICE KIND" (two words).
    pub fn parse_line(services: &[String], line: &str) -> Result<Answer, DrillError> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(service), Some(kind), None) => Answer::parse(services, service, kind),
            _ => Err(DrillError::UnknownKind {
                kind: line.trim().to_owned(),
                known: format!(
                    "{} (answer with two words: SERVICE KIND)",
                    FaultKind::list(|about| about.name.into())
                ),
            }),
        }
    }
}

/// How an answer did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub service_right: bool,
    pub kind_right: bool,
    pub seconds: u64,
    /// 0 to 100: 50 for the service, 30 for the kind, and up to 20 for speed when both
    /// are right (all 20 within two minutes, none after twelve).
    pub points: u32,
}

/// Full speed points up to this long.
const QUICK: u64 = 120;
/// No speed points after this long.
const SLOW: u64 = 720;

/// Scores `answer` (none: the learner gave up or time ran out) to `drill`, given after
/// `taken`.
pub fn score(drill: &Drill, answer: Option<&Answer>, taken: Duration) -> Score {
    let seconds = taken.as_secs();
    let service_right = answer.is_some_and(|a| a.service == drill.service);
    let kind_right = answer.is_some_and(|a| a.kind == drill.kind);
    let speed = if service_right && kind_right {
        let late = seconds.saturating_sub(QUICK).min(SLOW - QUICK);
        20 - u32::try_from(late * 20 / (SLOW - QUICK)).unwrap_or(20)
    } else {
        0
    };
    Score {
        service_right,
        kind_right,
        seconds,
        points: 50 * u32::from(service_right) + 30 * u32::from(kind_right) + speed,
    }
}

impl Score {
    /// "service right, kind wrong, 95 s: 50 points".
    pub fn summary(&self) -> String {
        let right = |yes: bool| if yes { "right" } else { "wrong" };
        format!(
            "service {}, kind {}, {} s: {} points",
            right(self.service_right),
            right(self.kind_right),
            self.seconds,
            self.points
        )
    }
}

#[cfg(test)]
mod tests {
    use contract::admin::FaultSpec;

    use super::*;
    use crate::drill::Level;

    fn services() -> Vec<String> {
        ["gateway-service", "inventory-service"]
            .map(str::to_owned)
            .into()
    }

    fn drill() -> Drill {
        Drill {
            level: Level::Single,
            seed: 1,
            service: "inventory-service".into(),
            kind: FaultKind::Error,
            spec: FaultSpec {
                error_rate: Some(0.3),
                ..FaultSpec::default()
            },
            depth: 2,
        }
    }

    fn answer(service: &str, kind: &str) -> Answer {
        Answer::parse(&services(), service, kind).expect("an answer")
    }

    #[test]
    fn both_right_and_quick_is_100_and_slowness_costs_only_the_speed_points() {
        let right = answer("inventory-service", "error");
        let quick = score(&drill(), Some(&right), Duration::from_secs(30));
        assert_eq!(
            (quick.points, quick.summary().as_str()),
            (100, "service right, kind right, 30 s: 100 points")
        );
        assert_eq!(
            score(&drill(), Some(&right), Duration::from_secs(420)).points,
            90
        );
        assert_eq!(
            score(&drill(), Some(&right), Duration::from_secs(3600)).points,
            80
        );
    }

    #[test]
    fn half_right_answers_score_their_half_and_no_answer_scores_nothing() {
        let service_only = score(
            &drill(),
            Some(&answer("inventory-service", "latency")),
            Duration::ZERO,
        );
        assert_eq!(
            (
                service_only.service_right,
                service_only.kind_right,
                service_only.points
            ),
            (true, false, 50)
        );
        let kind_only = score(
            &drill(),
            Some(&answer("gateway-service", "error-rate")),
            Duration::ZERO,
        );
        assert_eq!(
            (
                kind_only.service_right,
                kind_only.kind_right,
                kind_only.points
            ),
            (false, true, 30)
        );
        assert_eq!(score(&drill(), None, Duration::from_secs(5)).points, 0);
    }

    #[test]
    fn an_unknown_service_or_kind_is_refused_listing_what_exists() {
        let error = Answer::parse(&services(), "inventory", "error")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "`inventory` is not a service of the mesh; the services are gateway-service, inventory-service"
        );
        let error = Answer::parse(&services(), "inventory-service", "slow")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "`slow` is not a kind of fault; the kinds are latency, error, unreachable"
        );
    }

    #[test]
    fn a_typed_line_is_two_words_in_any_case_of_kind() {
        assert_eq!(
            Answer::parse_line(&services(), "  inventory-service  LATENCY \n").unwrap(),
            answer("inventory-service", "latency")
        );
        let error = Answer::parse_line(&services(), "inventory-service")
            .unwrap_err()
            .to_string();
        assert!(error.contains("two words: SERVICE KIND"), "{error}");
    }
}
