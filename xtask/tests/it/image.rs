//! `cargo xtask images` against a real Docker engine (CI starts one): the image holds only
//! the static binary, is small, runs as non-root, answers /health with `--network host`,
//! and an unchanged binary makes no new image.

use std::{process::Command, sync::OnceLock, time::Duration};

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Removes the container even when an assertion fails.
pub struct Container(pub String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "--force", &self.0]);
    }
}

/// The reference of the image `cargo xtask images` builds (`mock-service:<hash>`), built
/// once per test run; `None` (after saying SKIPPED, on every call: each test that cannot
/// run says so) where no Docker engine answers or the static binary cannot be built (no
/// musl target, or no C compiler for musl).
pub fn built_image() -> Option<&'static str> {
    if !crate::support::require_docker() || !crate::support::require_static_build() {
        return None;
    }
    static BUILT: OnceLock<String> = OnceLock::new();
    let reference = BUILT.get_or_init(|| {
        let build = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("images")
            .output()
            .expect("run xtask images");
        assert!(
            build.status.success(),
            "cargo xtask images failed:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        String::from_utf8_lossy(&build.stdout).trim().to_owned()
    });
    Some(reference)
}

#[test]
fn the_image_is_small_non_root_content_tagged_and_serves() {
    // target/image is shared with the benchmark and `cargo xtask clean`.
    let _serial = crate::support::serial();
    let Some(reference) = built_image() else {
        return;
    };
    let reference = reference.to_owned();
    assert!(
        !reference.contains('\n'),
        "stdout carries only the reference: {reference}"
    );
    let (name, tag) = reference.split_once(':').expect("name:tag");
    assert_eq!(name, "mock-service");
    assert!(
        tag.len() == 12 && tag.chars().all(|c| c.is_ascii_hexdigit()),
        "tag {tag} is not a content hash"
    );

    let inspect = |format: &str| {
        String::from_utf8_lossy(
            &docker(&["image", "inspect", "--format", format, &reference]).stdout,
        )
        .trim()
        .to_owned()
    };
    let size: u64 = inspect("{{.Size}}").parse().expect("size");
    assert!(size < 15 * 1024 * 1024, "the image is {size} bytes");
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/mock-service"]"#
    );

    // Same binary, same tag, no new image.
    let again = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("images")
        .output()
        .expect("run xtask images");
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), reference);
    assert!(String::from_utf8_lossy(&again.stderr).contains("is up to date"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let run = docker(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--env",
        "HOST=127.0.0.1",
        "--env",
        &format!("PORT={port}"),
        "--env",
        // Not the default 9901: service_containers.rs runs pods with it meanwhile.
        "ADMIN_PORT=0",
        "--env",
        "SERVICE_NAME=user-service",
        "--env",
        "OTEL_SDK_DISABLED=true",
        &reference,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let container = Container(String::from_utf8_lossy(&run.stdout).trim().to_owned());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let health = runtime.block_on(async {
        for _ in 0..100 {
            if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
                return Some((
                    response.status().as_u16(),
                    response.text().await.unwrap_or_default(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    });
    let logs = String::from_utf8_lossy(&docker(&["logs", &container.0]).stdout).into_owned();
    let (status, body) =
        health.unwrap_or_else(|| panic!("the container never answered; its logs:\n{logs}"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("user-service"), "{body}");
}
