# Evaluate one VM test (tests/vm/<name>.nix) the way the flake and nixpkgs'
# test framework do, without nixpkgs: the file is a test module imported into
# lib.evalModules next to the framework stand-in (testing.nix), with the
# module arguments the flake passes (`self`, `inputs`). Returns what the
# driver type-checks and lints: the test script, the machines, the VLANs.
#
#   nix-instantiate --eval --strict --json -E \
#     'import tests/vm/typecheck/eval.nix { lib = import <nixpkgs/lib>; file = ./tests/vm/coordinator.nix; }'
{ lib, file }:

let
  root = ../../..;
  fakePkgs = import ../../eval/lib/fake-pkgs.nix { inherit lib; };

  # flake.nix: modules/<name>.nix and modules/<name>/default.nix -> nixosModules.<name>
  modules = lib.concatMapAttrs (
    entry: type:
    if type == "regular" && lib.hasSuffix ".nix" entry then
      { ${lib.removeSuffix ".nix" entry} = root + "/modules/${entry}"; }
    else if type == "directory" && builtins.pathExists (root + "/modules/${entry}/default.nix") then
      { ${entry} = root + "/modules/${entry}"; }
    else
      { }
  ) (builtins.readDir (root + "/modules"));

  self = {
    nixosModules = modules // {
      default = modules.coordinator;
    };
    outPath = toString root;
  };
  inputs = {
    inherit self;
  };

  # A NixOS node over the option stand-ins of tests/eval/lib; what they do not
  # declare (virtualisation.*, networking.interfaces, ...) lands in a
  # free-form root instead of failing.
  evalNode =
    {
      name,
      module,
      defaults,
      nodeDefaults,
      extraBaseModules,
      specialArgs,
      nodes,
    }:
    (lib.evalModules {
      specialArgs = {
        modulesPath = "/nonexistent/nixos/modules";
      }
      // specialArgs;
      modules = [
        { freeformType = lib.types.lazyAttrsOf lib.types.anything; }
        ../../eval/lib/stubs.nix
        ../../eval/lib/stubs-lab.nix
        {
          _module.args = {
            pkgs = fakePkgs;
            inherit nodes;
          };
          networking.hostName = lib.mkDefault name;
        }
        defaults
        nodeDefaults
        extraBaseModules
        module
      ];
    }).config;

  test = lib.evalModules {
    class = "nixosTest";
    modules = [
      ./testing.nix
      {
        _module.args.evalNode = evalNode;
        # the flake (vmTestsFor): _module.args = { inherit self inputs; };
        # node.specialArgs = { inherit self inputs; };
        _module.args = {
          inherit self inputs;
          pkgs = fakePkgs;
          hostPkgs = fakePkgs;
        };
        node.specialArgs = {
          inherit self inputs;
        };
      }
      file
    ];
  };
in
test.config.evaluated
