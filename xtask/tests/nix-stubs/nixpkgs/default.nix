# Stand-in for `import nixpkgs { system; overlays; }`: the packages the dev shell uses,
# each a trivial derivation named like its attribute, and a mkShell that returns a real
# derivation recording what it was given. Any other attribute is missing, so a misspelt
# package in flake.nix fails evaluation here instead of on a developer's machine.
# Used by xtask/tests/it/nix_flake.rs (`--override-input nixpkgs path:...`). A new tool in
# the dev shell goes in `names` too, once its attribute is checked in the pinned nixpkgs.
{ system, overlays ? [ ], config ? { } }:
let
  # Attributes checked against nixpkgs (pkgs/by-name and all-packages.nix).
  names = [
    "cargo-nextest"
    "cargo-zigbuild"
    "docker-client"
    "grafana"
    "jq"
    "kind"
    "kubectl"
    "kustomize"
    "nixpkgs-fmt"
    "oha"
    "opentelemetry-collector-contrib"
    "prometheus-alertmanager"
    "tilt"
    "wrk"
    "zig"
  ]
  # Packages only some nixpkgs versions have (jaeger: not in 25.11); the test writes
  # this file to evaluate the shell with and without them.
  ++ import ./optional-packages.nix;

  stub = name: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo stub > $out" ];
  } // extra);

  isDerivation = x: builtins.isAttrs x && (x.type or null) == "derivation";

  mkShell =
    { name ? "nix-shell"
    , packages ? [ ]
    , nativeBuildInputs ? [ ]
    , buildInputs ? [ ]
    , inputsFrom ? [ ]
    , shellHook ? ""
    , ...
    }@attrs:
    let
      all = packages ++ nativeBuildInputs ++ buildInputs;
      bad = builtins.filter (p: !isDerivation p) all;
    in
    if bad != [ ] then throw "stub mkShell: an element of packages is not a derivation"
    else
      stub name (builtins.removeAttrs attrs [ "packages" "inputsFrom" ] // {
        # As nixpkgs' mkShell does: `packages` join nativeBuildInputs.
        nativeBuildInputs = packages ++ nativeBuildInputs;
        inherit buildInputs shellHook;
      });

  base = builtins.listToAttrs (map (n: { name = n; value = stub n { }; }) names) // {
    inherit mkShell system;
    # As in nixpkgs: promtool is in the `cli` output.
    prometheus = stub "prometheus" { outputs = [ "out" "cli" ]; };
  };

  # Overlays applied as nixpkgs does: each sees the final set and the one before it.
  final = builtins.foldl' (prev: overlay: prev // overlay final prev) base overlays;
in
final
