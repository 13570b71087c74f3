//! Asking a process whether it is ready: the one HTTP probe behind
//! [`crate::supervisor::Supervisor::wait_ready`], for `cargo xtask local` (the mesh and
//! its tools) and `cargo xtask bench` (its own meshes and start-up times).

use std::time::Duration;

/// Asks a URL whether its process is ready. A fresh connection every time (no pool): a
/// pooled connection to the process that just exited would hide a restart.
#[derive(Clone)]
pub struct Probe {
    client: reqwest::Client,
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
}
