//! What a run sends, how, and for how long.

use std::{fmt, str::FromStr, time::Duration};

use crate::{error::ParseError, mix::Mix, think::Think};

/// What to send, how, and for how long. The default is a gentle demo load: five users,
/// the default mix, 100 ms to 1 s between requests, five minutes.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub mix: Mix,
    /// Virtual users (closed model), or the connections opened at the start (open model:
    /// more open on demand, up to `max_connections`); 0 counts as 1.
    pub users: u32,
    /// The pause of a virtual user after each answer (closed model only).
    pub think: Think,
    /// Open model: requests started per second on a fixed schedule, whatever the answers
    /// do; latency counts from the scheduled start, so a stall shows instead of hiding.
    pub rate: Option<Rate>,
    /// Open model: when every connection is busy at a request's scheduled time, another
    /// opens, up to this many (at least `users`); beyond it requests wait for a free one.
    pub max_connections: u32,
    /// Open model: a request that cannot start within this long of its scheduled time is
    /// not sent, and counted as such: the wait is bounded, nothing queues forever.
    pub max_lag: Duration,
    /// `None` runs until cancelled (or until `requests` are done).
    pub duration: Option<Duration>,
    /// Stop after this many requests.
    pub requests: Option<u64>,
    /// How many of the slowest answered requests to keep, with their trace ids; 0 keeps
    /// none.
    pub slowest: usize,
}

impl Plan {
    /// The default cap of the open model's connections. By Little's law the connections
    /// in use are the rate times the time per request, and a tenth of the default mix is
    /// `/api/slow` (0.5 to 2 s): docs/traffic.md's example, 200 requests/s of that mix,
    /// opened 43 against the local mesh. The cap leaves room above that, and keeps an
    /// overloaded target from being flooded with connections without a word: the
    /// report says when the cap was reached.
    pub const MAX_CONNECTIONS: u32 = 100;
}

impl Default for Plan {
    fn default() -> Plan {
        Plan {
            mix: Mix::default(),
            users: 5,
            think: Think::REALISTIC,
            rate: None,
            max_connections: Plan::MAX_CONNECTIONS,
            max_lag: Duration::from_secs(1),
            duration: Some(Duration::from_secs(300)),
            requests: None,
            slowest: 5,
        }
    }
}

/// Requests per second of the open model: above 0, at most a million.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Rate(f64);

impl Rate {
    const MAX: f64 = 1_000_000.0;

    pub fn new(per_second: f64) -> Result<Rate, ParseError> {
        if per_second.is_finite() && per_second > 0.0 && per_second <= Rate::MAX {
            Ok(Rate(per_second))
        } else {
            Err(ParseError::new(format!(
                "the rate must be above 0 and at most {} requests per second",
                Rate::MAX
            )))
        }
    }

    pub fn per_second(self) -> f64 {
        self.0
    }

    /// The time between two scheduled requests.
    pub(crate) fn period(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.0)
    }
}

impl FromStr for Rate {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Rate, ParseError> {
        let per_second: f64 = text
            .trim()
            .parse()
            .map_err(|_| ParseError::new(format!("`{text}` is not a number")))?;
        Rate::new(per_second)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!("200".parse::<Rate>().expect("valid").per_second(), 200.0);
        assert_eq!("0.5".parse::<Rate>().expect("valid").to_string(), "0.5");
        assert_eq!(
            Rate::new(4.0).expect("valid").period(),
            Duration::from_millis(250)
        );
        for bad in ["0", "-5", "NaN", "inf", "2000000"] {
            let error = bad.parse::<Rate>().expect_err(bad).to_string();
            assert!(
                error.contains("above 0 and at most 1000000"),
                "{bad}: {error}"
            );
        }
        assert!(
            "fast"
                .parse::<Rate>()
                .expect_err("words")
                .to_string()
                .contains("`fast` is not a number")
        );
    }
}
