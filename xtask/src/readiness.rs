//! Waiting until a process answers: one HTTP probe and one loop, for `cargo xtask local`
//! (the mesh and its tools) and `cargo xtask bench` (its own meshes and start-up times).

use std::time::Duration;

use tokio::{process::Child, time::Instant};

/// Asks a URL whether its process is ready. A fresh connection every time (no pool): a
/// pooled connection to the process that just exited would hide a restart.
#[derive(Clone)]
pub struct Probe {
    client: reqwest::Client,
}

/// How a wait ended.
#[derive(Debug)]
pub enum Readiness {
    /// It answered, this long after the wait began.
    Ready(Duration),
    /// The process exited first.
    Exited(std::process::ExitStatus),
    /// No answer within the timeout.
    TimedOut,
}

impl Probe {
    pub fn new() -> anyhow::Result<Probe> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()?;
        Ok(Probe { client })
    }

    /// Whether `url` answers now: with a 2xx, or with anything at all when `any_answer`
    /// (a port that speaks HTTP but has nothing at that path).
    pub async fn answers(&self, url: &str, any_answer: bool) -> bool {
        self.client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| any_answer || response.status().is_success())
    }

    /// Polls `url` every `every` until it answers 2xx, `child` exits, or `timeout` passes.
    pub async fn wait(
        &self,
        url: &str,
        child: &mut Child,
        timeout: Duration,
        every: Duration,
    ) -> anyhow::Result<Readiness> {
        let started = Instant::now();
        loop {
            if self.answers(url, false).await {
                return Ok(Readiness::Ready(started.elapsed()));
            }
            if let Some(status) = child.try_wait()? {
                return Ok(Readiness::Exited(status));
            }
            if started.elapsed() >= timeout {
                return Ok(Readiness::TimedOut);
            }
            tokio::time::sleep(every).await;
        }
    }
}
