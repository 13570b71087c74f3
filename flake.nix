{
  # `nix develop` (or direnv's `use flake`) gives one shell with every tool the
  # playground uses, the same on Linux and macOS: the pinned Rust toolchain, the
  # cluster tools (kind, kubectl, kustomize, tilt, docker CLI) and the observability
  # stack that `cargo xtask local` starts when it finds it on PATH (Jaeger excepted:
  # nixpkgs 25.11 has none, see below).
  description = "Observability playground: seven instrumented axum services, their tools and a kind cluster";

  inputs = {
    # A stable release branch: binary-cached, so the shell downloads instead of building.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    # The exact toolchain of rust-toolchain.toml (nixpkgs has only one rustc, and no
    # musl std for cross targets); following our nixpkgs keeps one package set.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { nixpkgs, rust-overlay, flake-utils, ... }:
    # The four hosts a developer may have. The kind nodes are always Linux, which is why
    # the toolchain below can build static Linux binaries on any of them.
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ] (system:
      let
        pkgs = import nixpkgs {
          inherit system;
          overlays = [ rust-overlay.overlays.default ];
        };

        # One source of truth for the Rust version: rust-toolchain.toml, which rustup
        # users read too. The musl targets produce static binaries for `FROM scratch`
        # images on amd64 and arm64 kind nodes; rust-src serves rust-analyzer. The list
        # replaces the file's components, so rustfmt and clippy are repeated here.
        rust = (pkgs.rust-bin.fromRustupToolchainFile ./rust-toolchain.toml).override {
          extensions = [ "rust-src" "rustfmt" "clippy" ];
          targets = [ "x86_64-unknown-linux-musl" "aarch64-unknown-linux-musl" ];
        };

        # Where Jaeger comes from without a nixpkgs package: `cargo xtask local` runs the
        # cluster's image (manifests/base/monitoring/jaeger.yaml; xtask/tests/it/nix_flake.rs
        # checks that the two agree) when a Docker engine answers.
        jaegerImage = "jaegertracing/jaeger:2.10.0";
        jaegerNote =
          if pkgs ? jaeger then ", Jaeger"
          else ". nixpkgs 25.11 has no Jaeger: cargo xtask local uses a jaeger on PATH, else runs ${jaegerImage} in Docker when a Docker engine answers, else says how to get it";
      in
      {
        devShells.default = pkgs.mkShell {
          packages = [
            rust
            # Cross-linking to *-linux-musl without a C cross toolchain: cargo-zigbuild
            # uses zig as the linker, so macOS and Linux hosts build the same binaries.
            pkgs.cargo-zigbuild
            pkgs.zig
            pkgs.cargo-nextest

            # The kind cluster and the inner loop on it (`cargo xtask up`, `tilt up`).
            pkgs.kind
            pkgs.kubectl
            pkgs.kustomize
            pkgs.tilt
            # Only the docker CLI: the engine is the host's (Docker Desktop, colima, dockerd).
            pkgs.docker-client

            # The observability stack that `cargo xtask local` runs next to the services.
            pkgs.prometheus
            # nixpkgs puts promtool in prometheus' `cli` output, which is not on PATH
            # by default; the promtool rule tests need it.
            pkgs.prometheus.cli
            # Where Prometheus sends its alerts (the `alertmanager` binary).
            pkgs.prometheus-alertmanager
            pkgs.grafana
            pkgs.opentelemetry-collector-contrib # the `otelcol-contrib` binary
            pkgs.jq

            # The load generators `cargo xtask bench` measures its own against.
            pkgs.oha
            pkgs.wrk
          ]
          # nixpkgs 25.11 has no Jaeger (a `jaeger` package was only proposed for unstable
          # in 2026); it joins the shell once the pinned nixpkgs has it. Until then the
          # shell's message says where `cargo xtask local` gets it (jaegerNote).
          ++ (if pkgs ? jaeger then [ pkgs.jaeger ] else [ ]);

          shellHook = ''
            echo "observability-playground dev shell: Rust from rust-toolchain.toml (+ musl targets, cargo-zigbuild), kind, kubectl, kustomize, tilt, docker CLI, Prometheus, Alertmanager, Grafana, OpenTelemetry Collector${jaegerNote}; next: cargo xtask local (processes), or cargo xtask up / tilt up (kind cluster)"
          '';
        };

        # `nix fmt` formats this file.
        formatter = pkgs.nixpkgs-fmt;
      });
}
