# Stand-in for github:oxalica/rust-overlay. Like the real one it has a nixpkgs input,
# which the flake must make follow its own (offline, an unfollowed one cannot be fetched).
# fromRustupToolchainFile reads the file and returns a derivation whose `override`
# accepts rust-overlay's arguments only, and records the channel, components and targets.
{
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }: {
    overlays.default = final: prev: {
      rust-bin.fromRustupToolchainFile = file:
        let
          toolchain = (builtins.fromTOML (builtins.readFile file)).toolchain;
          components = [
            "cargo"
            "clippy"
            "llvm-tools"
            "miri"
            "rust-analyzer"
            "rust-docs"
            "rust-src"
            "rust-std"
            "rustc"
            "rustc-dev"
            "rustfmt"
          ];
          check = args:
            let
              unknownArgs = builtins.filter
                (a: !builtins.elem a [ "extensions" "targets" "targetExtensions" ])
                (builtins.attrNames args);
              unknownComponents = builtins.filter (c: !builtins.elem c components) (args.extensions or [ ]);
              badTargets = builtins.filter
                (t: builtins.match "[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?" t == null)
                (args.targets or [ ]);
            in
            if unknownArgs != [ ] then throw "stub rust-overlay: override has no argument ${builtins.head unknownArgs}"
            else if unknownComponents != [ ] then throw "stub rust-overlay: unknown component ${builtins.head unknownComponents}"
            else if badTargets != [ ] then throw "stub rust-overlay: not a target triple: ${builtins.head badTargets}"
            else args;
          make = args:
            let checked = check args; in
            derivation
              {
                name = "rust-${toolchain.channel}";
                inherit (final) system;
                builder = "/bin/sh";
                args = [ "-c" "echo stub > $out" ];
              } // {
              inherit (toolchain) channel;
              extensions = checked.extensions or [ ];
              targets = checked.targets or [ ];
              override = newArgs: make (args // newArgs);
            };
        in
        make { extensions = toolchain.components or [ ]; targets = toolchain.targets or [ ]; };
    };
  };
}
