# Stand-in for github:numtide/flake-utils: eachSystem and eachDefaultSystem, which turn
# `system: { devShells.default = ...; }` into `{ devShells.<system>.default = ...; }`.
{
  outputs = { self }: {
    lib = {
      defaultSystems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      eachDefaultSystem = self.lib.eachSystem self.lib.defaultSystems;
      eachSystem = systems: f:
        builtins.foldl'
          (attrs: system:
            let ret = f system; in
            builtins.foldl'
              (attrs: key: attrs // { ${key} = (attrs.${key} or { }) // { ${system} = ret.${key}; }; })
              attrs
              (builtins.attrNames ret))
          { }
          systems;
    };
  };
}
