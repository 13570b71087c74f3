//! One keep-alive HTTP/1.1 connection per virtual user, on hyper directly: no pool lookup,
//! no URL parsing per request, nothing allocated per request but the request itself.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use contract::TRACE_ID_HEADER;
use http::{HeaderMap, HeaderValue, Method, Uri};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::{endpoint::Endpoint, target::Target};

/// A request that has not answered after this long counts as a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// Could not open a connection (the target is down, or the address is wrong).
    Connect(String),
    Timeout,
    /// The connection broke mid-request.
    Broken(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Connect(cause) => write!(f, "cannot connect: {cause}"),
            RequestError::Timeout => write!(f, "no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            RequestError::Broken(cause) => write!(f, "connection broke: {cause}"),
        }
    }
}

/// An answer, read to the end.
pub(crate) struct Answer {
    pub status: u16,
    /// Kept, not read: only an answer among the slowest has its trace id looked up.
    headers: HeaderMap,
}

impl Answer {
    /// The `x-trace-id` header, if it holds a trace id (32 hex digits).
    pub fn trace_id(&self) -> Option<String> {
        let value = self.headers.get(TRACE_ID_HEADER)?.to_str().ok()?;
        (value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| value.to_ascii_lowercase())
    }
}

/// A target that answered `GET /health`, and the address that answered.
#[derive(Clone, Debug)]
pub struct Reachable {
    pub(crate) target: Target,
    pub(crate) address: SocketAddr,
}

impl Reachable {
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Why [`preflight`] found no target to send to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    #[error("cannot resolve {host}: {cause}")]
    Unresolved { host: String, cause: String },
    /// Nothing at the target's addresses answered `GET /health`; `cause` is the last
    /// address's reason.
    #[error("{url} is not answering ({cause})")]
    NotAnswering { url: String, cause: String },
}

/// A virtual user's connection; reconnects after an error.
pub(crate) struct Connection {
    address: SocketAddr,
    host: HeaderValue,
    /// Each endpoint's method and path, made once: parsing the path per request was
    /// measurable at full speed.
    requests: [(Method, Uri); Endpoint::ALL.len()],
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Connection {
    pub fn new(target: &Reachable) -> Connection {
        Connection {
            address: target.address,
            host: target.target.host_header().clone(),
            requests: Endpoint::ALL
                .map(|endpoint| (endpoint.method(), Uri::from_static(endpoint.path()))),
            sender: None,
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, endpoint: Endpoint) -> Result<Answer, RequestError> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(endpoint))
            .await
            .unwrap_or(Err(RequestError::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, endpoint: Endpoint) -> Result<Answer, RequestError> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(connect(self.address).await?),
        };
        sender
            .ready()
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        let (method, path) = &self.requests[endpoint.index()];
        let mut request = http::Request::new(Empty::new());
        *request.method_mut() = method.clone();
        *request.uri_mut() = path.clone();
        request
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        let (parts, body) = response.into_parts();
        // Read the body to the end so the connection can carry the next request.
        body.collect()
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        Ok(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
        })
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, RequestError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| {
            RequestError::Connect(format!(
                "no answer from {address} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| RequestError::Connect(format!("{address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| RequestError::Connect(e.to_string()))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Resolves the target and checks that it answers `GET /health`, so a target that is down
/// is reported at once, in one sentence, instead of as a wall of failed requests.
pub async fn preflight(target: &Target) -> Result<Reachable, PreflightError> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host(), target.port()))
        .await
        .map_err(|e| PreflightError::Unresolved {
            host: target.host().to_owned(),
            cause: e.to_string(),
        })?
        .collect();
    let mut last_error = None;
    for address in addresses {
        let candidate = Reachable {
            target: target.clone(),
            address,
        };
        let mut connection = Connection::new(&candidate);
        match tokio::time::timeout(CONNECT_TIMEOUT, connection.send(Endpoint::Health)).await {
            Ok(Ok(_)) => return Ok(candidate),
            Ok(Err(error)) => last_error = Some(error.to_string()),
            Err(_) => {
                last_error = Some(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()));
            }
        }
    }
    Err(PreflightError::NotAnswering {
        url: target.url().to_owned(),
        cause: last_error.unwrap_or_else(|| "no address".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_with(trace: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(trace) = trace {
            headers.insert(
                TRACE_ID_HEADER,
                HeaderValue::from_str(trace).expect("value"),
            );
        }
        Answer {
            status: 200,
            headers,
        }
    }

    #[test]
    fn a_trace_id_is_32_hex_digits() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(answer_with(Some(id)).trace_id().as_deref(), Some(id));
        assert_eq!(
            answer_with(Some(&id.to_ascii_uppercase()))
                .trace_id()
                .as_deref(),
            Some(id)
        );
        for bad in [
            None,
            Some("4bf92f35"),
            Some("zzf92f3577b34da6a3ce929d0e0e4736"),
        ] {
            assert_eq!(answer_with(bad).trace_id(), None, "{bad:?}");
        }
    }
}
