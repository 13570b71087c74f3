//! The five kinds of request a virtual user makes, with their paths from
//! `contract::endpoints`, where every endpoint of the services is named.

use std::fmt;

use contract::endpoints;
use http::Method;

/// A kind of request: a [`crate::Mix`] spreads the traffic over these five.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    Data,
    Action,
    Health,
    Slow,
    Error,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::Data,
        Endpoint::Action,
        Endpoint::Health,
        Endpoint::Slow,
        Endpoint::Error,
    ];

    /// The position in [`Endpoint::ALL`], for per-endpoint arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Data => endpoints::DATA,
            Endpoint::Action => endpoints::ACTION,
            Endpoint::Health => endpoints::HEALTH,
            Endpoint::Slow => endpoints::SLOW,
            Endpoint::Error => endpoints::ERROR,
        }
    }

    /// Its name in a mix (`data=40,action=20`): the path's last segment.
    pub fn key(self) -> &'static str {
        let path = self.path();
        path.rsplit('/').next().unwrap_or(path)
    }

    /// The method the services serve the path with.
    pub fn method(self) -> Method {
        endpoints::ALL
            .iter()
            .find(|(_, path)| *path == self.path())
            .map_or(Method::GET, |(method, _)| method.clone())
    }

    /// `/api/error` answers 500 by design: that is an expected error, not a failure.
    pub fn expects_error(self, status: u16) -> bool {
        self == Endpoint::Error && status == 500
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method(), self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_by_their_paths() {
        let shown: Vec<(String, &str)> = Endpoint::ALL
            .iter()
            .map(|e| (e.to_string(), e.key()))
            .collect();
        assert_eq!(
            shown,
            [
                ("GET /api/data".to_owned(), "data"),
                ("POST /api/action".to_owned(), "action"),
                ("GET /health".to_owned(), "health"),
                ("GET /api/slow".to_owned(), "slow"),
                ("GET /api/error".to_owned(), "error"),
            ]
        );
        assert!(
            Endpoint::ALL
                .iter()
                .enumerate()
                .all(|(i, e)| e.index() == i)
        );
    }
}
