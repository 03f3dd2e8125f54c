# Evaluate a lab host (hosts/<host>/default.nix) without nixpkgs: the
# module system from nixpkgs' lib, typed option stand-ins, fake pkgs.
#   import ./eval-host.nix { inherit lib; host = "hydra-ai"; modules = [ ... ]; }
# Returns the evalModules result; `.config` is the host's configuration.
# At merge: stubs-base-tmp.nix -> stubs.nix, fake-pkgs-tmp.nix -> fake-pkgs.nix,
# coordinator-standin.nix -> ../../../modules/coordinator.nix.
{
  lib,
  host,
  modules ? [ ],
}:
let
  pkgs = import ./fake-pkgs-tmp.nix { inherit lib; };
in
lib.evalModules {
  specialArgs = {
    modulesPath = "/nonexistent/nixos/modules";
  };
  modules = [
    { _module.args.pkgs = pkgs; }
    ./stubs-base-tmp.nix
    ./stubs-lab.nix
    ./coordinator-standin.nix
    (../../../hosts + "/${host}/default.nix")
  ]
  ++ modules;
}
