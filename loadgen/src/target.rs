//! The target's base URL, reduced to what the client needs.

use std::{fmt, str::FromStr};

use http::HeaderValue;

use crate::error::ParseError;

/// An `http://HOST[:PORT]` base URL, without a path.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    host: String,
    port: u16,
    /// The `Host` header of every request, checked once here.
    host_header: HeaderValue,
    url: String,
}

impl Target {
    /// `http://HOST:PORT`, as requests are sent to it.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl FromStr for Target {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Target, ParseError> {
        let uri: http::Uri = text
            .trim()
            .parse()
            .map_err(|_| ParseError::new(format!("`{text}` is not a URL")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(ParseError::new(format!(
                    "only http:// targets are supported, not {other}://"
                )));
            }
            None => {
                return Err(ParseError::new(format!(
                    "`{text}` needs a scheme: http://HOST:PORT"
                )));
            }
        }
        if !matches!(uri.path(), "" | "/") {
            return Err(ParseError::new(
                "give the base URL only (e.g. http://localhost:30080), without a path",
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ParseError::new("the URL has no host"))?;
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| {
            ParseError::new(format!("`{authority}` cannot be sent as a Host header"))
        })?;
        Ok(Target {
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: authority.port_u16().unwrap_or(80),
            host_header,
            url: format!("http://{}", authority.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let target: Target = "http://localhost:30080".parse().expect("valid");
        assert_eq!((target.host(), target.port()), ("localhost", 30080));
        assert_eq!(target.host_header(), "localhost:30080");
        let default_port: Target = "http://127.0.0.1/".parse().expect("valid");
        assert_eq!(
            (default_port.port(), default_port.url()),
            (80, "http://127.0.0.1")
        );
        let ipv6: Target = "http://[::1]:8080".parse().expect("valid");
        assert_eq!((ipv6.host(), ipv6.port()), ("::1", 8080));
        for (bad, reason) in [
            ("https://localhost", "only http://"),
            ("localhost:30080", "needs a scheme"),
            ("http://localhost:30080/api", "without a path"),
            ("http://local host", "is not a URL"),
        ] {
            let error = bad.parse::<Target>().expect_err(bad).to_string();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
