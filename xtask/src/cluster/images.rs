//! `cargo xtask images`: the static mock-service binary for the kind nodes, built on the
//! host, and its image tagged by content (an unchanged binary makes no new image).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

use super::{IMAGE, IMAGE_LABEL, Runner};
use crate::{
    cmd::{Cmd, find_on_path},
    paths::{IMAGE_CONTEXT, cluster_state, image_context, target_dir, workspace_root},
};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask images                 # build the binary and the image mock-service:<content hash>
  cargo xtask images --binary-only   # just target/image/mock-service (what Tilt runs)
  cargo xtask images --dry-run

The binary links jemalloc, which is C: besides Rust's musl target it needs a C compiler
for musl. On Linux that is Debian's or Ubuntu's musl-tools (`apt-get install musl-tools`),
else zig with cargo-zigbuild, which `nix develop` has on Linux and macOS alike.")]
pub struct ImagesArgs {
    /// Build the static binary into target/image/ but no image (Tilt packages it)
    #[arg(long)]
    pub binary_only: bool,
    /// Print the commands instead of running them
    #[arg(long)]
    pub dry_run: bool,
}

/// What `--dry-run` shows in place of a tag it cannot know yet.
pub const TAG_PLACEHOLDER: &str = "<sha256 of target/image/mock-service>";

/// The Rust target of the kind nodes: Linux on this machine's architecture, linked
/// statically (musl) so the image needs nothing but the binary.
pub fn node_target() -> String {
    format!("{}-unknown-linux-musl", std::env::consts::ARCH)
}

impl ImagesArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let runner = Runner {
            dry_run: self.dry_run,
        };
        let binary = build_binary(runner)?;
        if self.binary_only {
            if !runner.dry_run {
                println!("{}", binary.display());
            }
            return Ok(());
        }
        let reference = build_image(runner)?;
        if !runner.dry_run {
            println!("{reference}");
        }
        Ok(())
    }
}

/// Builds the binary for the nodes and copies it into the image context.
pub fn build_binary(runner: Runner) -> anyhow::Result<PathBuf> {
    let target = node_target();
    let build = musl_toolchain(runner)?;
    runner.run(
        Cmd::new("cargo", "building the static mock-service binary")
            .args([
                build,
                "--profile",
                "container",
                "--target",
                &target,
                "--package",
                "mock-service",
            ])
            .current_dir(workspace_root()),
    )?;
    let destination = image_context().join("mock-service");
    if runner.dry_run {
        return Ok(destination);
    }
    let built = target_dir()
        .join(&target)
        .join("container")
        .join("mock-service");
    std::fs::create_dir_all(image_context())?;
    // Replace, not overwrite in place: a running container may hold the old file.
    let _ = std::fs::remove_file(&destination);
    std::fs::copy(&built, &destination)
        .with_context(|| format!("copying {} to {}", built.display(), destination.display()))?;
    Ok(destination)
}

/// Which cargo subcommand builds the static binary. The binary has C inside (jemalloc,
/// its allocator), so it needs a C compiler for musl as well as Rust's musl target: on a
/// Linux host Debian's and Ubuntu's `musl-tools` (`<arch>-linux-musl-gcc`, which the `cc`
/// crate finds by that name) with plain `cargo build`; else zig, through cargo-zigbuild,
/// which is what `nix develop` has on every host and the only way on macOS.
pub fn musl_toolchain(runner: Runner) -> anyhow::Result<&'static str> {
    const ZIG: [&str; 3] = ["cargo", "cargo-zigbuild", "zig"];
    let musl_gcc = format!("{}-linux-musl-gcc", std::env::consts::ARCH);
    let zig_found = || ZIG.iter().all(|tool| find_on_path(tool).is_some());
    if cfg!(target_os = "linux") && (runner.dry_run || find_on_path(&musl_gcc).is_some()) {
        return Ok("build");
    }
    if cfg!(target_os = "linux") && !zig_found() {
        bail!(
            "building the static binary needs a C compiler for musl (jemalloc is C), and \
             neither {musl_gcc} nor zig with cargo-zigbuild is on PATH: install Debian's or \
             Ubuntu's `musl-tools` (apt-get install musl-tools), or run inside `nix develop`"
        );
    }
    runner.require(&ZIG)?;
    Ok("zigbuild")
}

/// Builds `mock-service:<first 12 hex of the binary's sha256>` unless it exists, and
/// records the reference for `load` and `deploy`.
pub fn build_image(runner: Runner) -> anyhow::Result<String> {
    runner.require(&["docker"])?;
    let reference = if runner.dry_run {
        format!("{IMAGE}:{TAG_PLACEHOLDER}")
    } else {
        image_reference(&image_context().join("mock-service"))?
    };
    let exists = !runner.dry_run
        && Cmd::new("docker", "checking for the image")
            .args(["image", "inspect", &reference])
            .succeeds()?;
    if exists {
        eprintln!("{reference} is up to date (same binary, same image)");
    } else {
        runner.run(
            Cmd::new("docker", "building the mock-service image")
                .args([
                    "build",
                    "--tag",
                    &reference,
                    "--label",
                    IMAGE_LABEL,
                    "--file",
                    "Dockerfile",
                    IMAGE_CONTEXT,
                ])
                .current_dir(workspace_root()),
        )?;
    }
    if !runner.dry_run {
        std::fs::create_dir_all(cluster_state())?;
        std::fs::write(cluster_state().join("image"), &reference)?;
    }
    Ok(reference)
}

/// The image built last, for `load` and `deploy`.
pub fn last_built(runner: Runner) -> anyhow::Result<String> {
    if runner.dry_run {
        return Ok(format!("{IMAGE}:{TAG_PLACEHOLDER}"));
    }
    let path = cluster_state().join("image");
    std::fs::read_to_string(&path)
        .map(|reference| reference.trim().to_owned())
        .with_context(|| {
            format!(
                "no image built yet ({} is missing): run `cargo xtask images`",
                path.display()
            )
        })
}

pub fn image_reference(binary: &std::path::Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let digest = Sha256::digest(&bytes);
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(format!("{IMAGE}:{hex}"))
}
