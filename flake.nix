# Hydra: a NixOS flake for a 3-node home AI lab and its hybrid LLM coordinator.
#
# Conventions (picked up automatically, no edit of this file needed):
#   modules/<name>.nix, modules/<name>/default.nix -> nixosModules.<name>
#     (nixosModules.default = nixosModules.coordinator)
#   hosts/<name>/default.nix -> nixosConfigurations.<name>, a NixOS module
#     evaluated with specialArgs = { inherit self inputs; }; it must set
#     nixpkgs.hostPlatform. Its toplevel is checks.<system>.host-<name>.
#   tests/vm/<name>.nix -> checks.x86_64-linux.<name>, a test module for
#     pkgs.testers.runNixOSTest. It may take { self, inputs, pkgs, lib,
#     config, ... } (self = this flake, pkgs = nixpkgs with overlays.default);
#     its nodes get specialArgs = { inherit self inputs; }. See
#     tests/vm/README.md.
#   tests/eval/test-*.nix -> run by tests/eval/run (checks.<system>.eval).
{
  description = "Hydra: NixOS flake for a home AI lab and its hybrid LLM coordinator";

  inputs = {
    # Update with `nix flake update nixpkgs` (see docs/nixos.md, "Updating nixpkgs").
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  };

  outputs =
    { self, nixpkgs, ... }@inputs:
    let
      inherit (nixpkgs) lib;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # VM tests need KVM-capable builders; the lab is x86_64.
      vmTestSystems = [ "x86_64-linux" ];

      pkgsFor = lib.genAttrs systems (
        system:
        import nixpkgs {
          inherit system;
          overlays = [ self.overlays.default ];
        }
      );
      forAllSystems = f: lib.genAttrs systems (system: f system pkgsFor.${system});

      dirEntries = dir: if builtins.pathExists dir then builtins.readDir dir else { };

      # modules/<name>.nix and modules/<name>/default.nix, by name.
      modules = lib.concatMapAttrs (
        entry: type:
        if type == "regular" && lib.hasSuffix ".nix" entry then
          { ${lib.removeSuffix ".nix" entry} = ./modules + "/${entry}"; }
        else if type == "directory" && builtins.pathExists (./modules + "/${entry}/default.nix") then
          { ${entry} = ./modules + "/${entry}"; }
        else
          { }
      ) (dirEntries ./modules);

      hosts = lib.filterAttrs (
        name: type: type == "directory" && builtins.pathExists (./hosts + "/${name}/default.nix")
      ) (dirEntries ./hosts);

      vmTestFiles = lib.filterAttrs (
        name: type: type == "regular" && lib.hasSuffix ".nix" name
      ) (dirEntries ./tests/vm);

      vmTestsFor =
        pkgs:
        lib.mapAttrs' (
          file: _:
          lib.nameValuePair (lib.removeSuffix ".nix" file) (
            pkgs.testers.runNixOSTest {
              imports = [ (./tests/vm + "/${file}") ];
              _module.args = { inherit self inputs; };
              node.specialArgs = { inherit self inputs; };
            }
          )
        ) vmTestFiles;

      # nixpkgs' lib tests do the same: a private store so that
      # nix-instantiate can evaluate inside the build sandbox.
      evalTests =
        pkgs:
        pkgs.runCommand "hydra-eval-tests"
          {
            nativeBuildInputs = [
              pkgs.nix
              pkgs.python3
            ];
          }
          ''
            export TEST_ROOT="$TMPDIR/nix-test"
            export HOME="$TMPDIR/home"
            export NIX_CONF_DIR="$TEST_ROOT/etc"
            export NIX_LOCALSTATE_DIR="$TEST_ROOT/var"
            export NIX_LOG_DIR="$TEST_ROOT/var/log/nix"
            export NIX_STATE_DIR="$TEST_ROOT/var/nix"
            export NIX_STORE_DIR="$TEST_ROOT/store"
            mkdir -p "$HOME"
            nix-store --init
            cp -r ${self} source && chmod -R u+w source
            HYDRA_NIXPKGS_LIB=${nixpkgs} bash source/tests/eval/run | tee "$out"
            grep -q '^ok' "$out" # a skip here would be a silent pass
          '';
    in
    {
      overlays.default = final: _prev: {
        hydra-coordinator = final.callPackage ./pkgs/hydra-coordinator/package.nix {
          hydraVmTests = lib.optionalAttrs (lib.elem final.stdenv.hostPlatform.system vmTestSystems) (
            lib.filterAttrs (name: _: lib.hasPrefix "coordinator" name) (vmTestsFor final)
          );
        };
      };

      packages = forAllSystems (
        _system: pkgs: {
          inherit (pkgs) hydra-coordinator;
          default = pkgs.hydra-coordinator;
        }
      );

      # `nix run .#coordinator` serves with the embedded defaults.
      apps = forAllSystems (
        _system: pkgs: {
          coordinator = {
            type = "app";
            program = "${pkgs.writeShellScript "hydra-coordinator-serve" ''
              exec ${lib.getExe pkgs.hydra-coordinator} serve "$@"
            ''}";
            meta.description = "Run the Hydra coordinator (hydra-coordinator serve)";
          };
          default = self.apps.${pkgs.stdenv.hostPlatform.system}.coordinator;
        }
      );

      nixosModules = modules // {
        default = self.nixosModules.coordinator;
      };

      nixosConfigurations = lib.mapAttrs (
        name: _:
        lib.nixosSystem {
          specialArgs = { inherit self inputs; };
          modules = [ (./hosts + "/${name}") ];
        }
      ) hosts;

      checks = forAllSystems (
        system: pkgs:
        {
          inherit (pkgs) hydra-coordinator;
          eval = evalTests pkgs;
        }
        // lib.optionalAttrs (lib.elem system vmTestSystems) (vmTestsFor pkgs)
        // lib.mapAttrs' (name: host: lib.nameValuePair "host-${name}" host.config.system.build.toplevel) (
          lib.filterAttrs (
            _: host: host.pkgs.stdenv.hostPlatform.system == system
          ) self.nixosConfigurations
        )
      );

      devShells = forAllSystems (
        _system: pkgs: {
          default = pkgs.mkShell {
            packages = [
              (pkgs.python3.withPackages (
                ps:
                pkgs.hydra-coordinator.pythonDependencies ps
                ++ [
                  ps.openai
                  ps.pytest
                  ps.pytest-asyncio
                  ps.hatchling
                  # in the Python env so that it finds the pydantic.mypy plugin
                  ps.mypy
                ]
              ))
              pkgs.postgresql
              pkgs.redis
              pkgs.ruff
              pkgs.nixfmt
            ];
            shellHook = ''
              export PYTHONPATH="$PWD/coordinator''${PYTHONPATH:+:$PYTHONPATH}"
            '';
          };
        }
      );

      formatter = forAllSystems (_system: pkgs: pkgs.nixfmt-tree);
    };
}
