//! A virtual user's pause between two requests, and the duration syntax of every option.

use std::{fmt, str::FromStr, time::Duration};

use crate::error::ParseError;

/// A virtual user's pause after each answer (closed model only).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Think {
    None,
    Fixed(Duration),
    /// Uniform between the two.
    Between(Duration, Duration),
}

impl Think {
    /// People pause: between 100 ms and 1 s after each answer.
    pub const REALISTIC: Think = Think::Between(Duration::from_millis(100), Duration::from_secs(1));

    pub fn pick(self) -> Duration {
        match self {
            Think::None => Duration::ZERO,
            Think::Fixed(pause) => pause,
            Think::Between(low, high) => {
                let span = high.saturating_sub(low).as_micros() as u64;
                low + Duration::from_micros(fastrand::u64(0..=span))
            }
        }
    }
}

/// `0`, a duration (`250ms`) or a range (`100ms..1s`).
impl FromStr for Think {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Think, ParseError> {
        let text = text.trim();
        if text == "0" {
            return Ok(Think::None);
        }
        if let Some((low, high)) = text.split_once("..") {
            let (low, high) = (parse_duration(low)?, parse_duration(high)?);
            if low > high {
                return Err(ParseError::new(format!(
                    "the range {text} runs backwards: write LOW..HIGH"
                )));
            }
            return Ok(Think::Between(low, high));
        }
        Ok(match parse_duration(text)? {
            Duration::ZERO => Think::None,
            pause => Think::Fixed(pause),
        })
    }
}

impl fmt::Display for Think {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Think::None => write!(f, "0"),
            Think::Fixed(pause) => write!(f, "{}", show(pause)),
            Think::Between(low, high) => write!(f, "{}..{}", show(low), show(high)),
        }
    }
}

/// `250ms`, `2s`, `1m30s`.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        ParseError::new(format!(
            "`{}` is not a duration like 250ms, 2s or 1m",
            text.trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_times() {
        assert_eq!("0".parse::<Think>().expect("valid"), Think::None);
        assert_eq!("0s".parse::<Think>().expect("valid"), Think::None);
        assert_eq!(
            "250ms".parse::<Think>().expect("valid"),
            Think::Fixed(Duration::from_millis(250))
        );
        let range: Think = "100ms..1s".parse().expect("valid");
        assert_eq!(range, Think::REALISTIC);
        assert_eq!(range.to_string(), "100ms..1s");
        assert!((0..100).all(|_| {
            (Duration::from_millis(100)..=Duration::from_secs(1)).contains(&range.pick())
        }));
        assert!(
            "1s..100ms"
                .parse::<Think>()
                .expect_err("backwards")
                .to_string()
                .contains("runs backwards")
        );
        assert!(
            "soon"
                .parse::<Think>()
                .expect_err("no duration")
                .to_string()
                .contains("`soon` is not a duration")
        );
    }
}
