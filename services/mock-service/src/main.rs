//! The `mock-service` binary: reads its configuration from the environment, sets up
//! telemetry and serves its role of the topology until SIGTERM or Ctrl+C.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context as _;
use mock_service::{AppState, config::Config, server};
use tokio::net::TcpListener;

/// jemalloc, in the glibc build and in the image's static (musl) build alike. Every
/// request allocates (headers, span data and its export, log lines): with the system
/// allocators, malloc and free were 17% of a loaded machine's CPU samples, and musl's
/// malloc was a large part of why the static binary served 0.54 of the glibc build.
/// mimalloc was slower here and held twice the memory under load; docs/benchmarks.md
/// has the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    if std::env::args()
        .skip(1)
        .any(|arg| arg == "--help" || arg == "-h")
    {
        print!("{}", mock_service::config::USAGE);
        return ExitCode::SUCCESS;
    }
    // Configuration errors are reported before logging is set up, as plain text.
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("mock-service: {error:#}\n(run `mock-service --help` for the variables)");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mock-service: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(config: Config) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&config.service_name)?;
    let service = config
        .topology
        .service(&config.service_name)
        .context("the service vanished from the topology")?;
    let state = AppState::new(
        service,
        &config.dependency_urls,
        config.downstream_timeout,
        config.exemplars,
    )?;

    let address = SocketAddr::new(config.host, config.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!(
            "cannot listen on {address}: is another process using port {}?",
            config.port
        )
    })?;
    tracing::info!(
        service = config.service_name,
        address = %listener.local_addr()?,
        dependencies = ?config.dependency_urls,
        "listening"
    );

    let admin = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, config.admin_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{} for the admin API (ADMIN_PORT)",
                config.admin_port
            )
        })?;
    tracing::info!(address = %admin.local_addr()?, "admin API listening");
    let admin_app =
        mock_service::faults::admin_app(state.faults().clone(), config.service_name.clone());
    // The admin API lives as long as the process; it has no in-flight work to drain.
    tokio::spawn(async move { axum::serve(admin, admin_app).await });

    let drained = server::serve(
        listener,
        state,
        telemetry::shutdown_signal(),
        config.shutdown,
    )
    .await
    .context("serving HTTP")?;
    tracing::info!(drained, "stopped serving; flushing spans");
    telemetry.shutdown().await;
    Ok(())
}
