# Stand-in for github:NixOS/nixpkgs: the flake imports it as `import nixpkgs { ... }`,
# which reads default.nix beside this file.
{
  outputs = { self }: { };
}
