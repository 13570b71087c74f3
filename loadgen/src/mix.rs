//! How requests are spread over the endpoints.

use std::{fmt, str::FromStr};

use crate::{endpoint::Endpoint, error::ParseError};

const KINDS: usize = Endpoint::ALL.len();

/// The share of each endpoint, e.g. `data=40,action=20,health=20,slow=10,error=10`
/// (weights: they need not add up to 100).
#[derive(Clone, Debug, PartialEq)]
pub struct Mix {
    /// Cumulative shares in `Endpoint::ALL` order, the last one 1.0.
    cumulative: [f64; KINDS],
    shares: [f64; KINDS],
}

impl Mix {
    /// The default mix, written as `--mix` takes it: mostly reads, a fifth actions, a tenth
    /// each of slow and failing requests.
    pub const DEFAULT_WEIGHTS: &'static str = "data=40,action=20,health=20,slow=10,error=10";

    /// Every request to `endpoint`.
    pub fn only(endpoint: Endpoint) -> Mix {
        let mut weights = [0.0; KINDS];
        weights[endpoint.index()] = 1.0;
        Mix::normalised(weights)
    }

    /// A random endpoint, each as often as its share.
    pub fn pick(&self) -> Endpoint {
        let x = fastrand::f64();
        let index = self
            .cumulative
            .iter()
            .position(|c| x < *c)
            .unwrap_or(KINDS - 1);
        Endpoint::ALL[index]
    }

    /// The share of `endpoint`, 0 to 1.
    pub fn share(&self, endpoint: Endpoint) -> f64 {
        self.shares[endpoint.index()]
    }

    /// `weights` as shares; their total must be above 0.
    fn normalised(weights: [f64; KINDS]) -> Mix {
        let total: f64 = weights.iter().sum();
        let shares = weights.map(|weight| weight / total);
        let mut running = 0.0;
        let mut cumulative = shares.map(|share| {
            running += share;
            running
        });
        cumulative[KINDS - 1] = 1.0;
        Mix { cumulative, shares }
    }
}

/// [`Mix::DEFAULT_WEIGHTS`].
impl Default for Mix {
    fn default() -> Mix {
        Mix::DEFAULT_WEIGHTS
            .parse()
            .expect("the default mix parses")
    }
}

impl FromStr for Mix {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Mix, ParseError> {
        let mut weights = [0.0; KINDS];
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, weight)) = part.split_once('=') else {
                return Err(ParseError::new(format!(
                    "`{part}` should be NAME=WEIGHT, e.g. data=40"
                )));
            };
            let endpoint = Endpoint::ALL
                .into_iter()
                .find(|e| e.key() == name.trim())
                .ok_or_else(|| {
                    let names: Vec<&str> = Endpoint::ALL.iter().map(|e| e.key()).collect();
                    ParseError::new(format!(
                        "`{name}` is not an endpoint: use {}",
                        names.join(", ")
                    ))
                })?;
            weights[endpoint.index()] = weight
                .trim()
                .trim_end_matches('%')
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| {
                    ParseError::new(format!(
                        "the weight of {name} must be a number of 0 or more"
                    ))
                })?;
        }
        if weights.iter().sum::<f64>() <= 0.0 {
            return Err(ParseError::new(
                "give at least one endpoint a weight above 0, e.g. data=100",
            ));
        }
        Ok(Mix::normalised(weights))
    }
}

/// The shares as a mix that parses back to this one, e.g. `data=0.4,action=0.6`.
impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Endpoint::ALL
            .iter()
            .filter(|endpoint| self.share(**endpoint) > 0.0)
            .map(|endpoint| format!("{}={}", endpoint.key(), self.share(*endpoint)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_mix() {
        let mix = Mix::default();
        assert_eq!(mix.share(Endpoint::Data), 0.4);
        assert_eq!(mix.share(Endpoint::Action), 0.2);
        assert_eq!(mix.share(Endpoint::Error), 0.1);
        let only_errors: Mix = "error=1".parse().expect("valid");
        assert_eq!(only_errors, Mix::only(Endpoint::Error));
        assert_eq!(only_errors.to_string(), "error=1");
        assert_eq!(mix.to_string().parse::<Mix>(), Ok(mix));
        assert!((0..100).all(|_| only_errors.pick() == Endpoint::Error));
    }

    #[test]
    fn bad_mixes_say_why() {
        for (text, reason) in [
            ("data", "NAME=WEIGHT"),
            (
                "dta=40",
                "not an endpoint: use data, action, health, slow, error",
            ),
            ("data=-1", "0 or more"),
            ("data=0", "at least one"),
        ] {
            let error = text.parse::<Mix>().expect_err(text).to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }
}
