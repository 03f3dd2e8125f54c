# Evaluate a lab host (hosts/<host>/default.nix) without nixpkgs: the
# module system from nixpkgs' lib, typed option stand-ins, fake pkgs.
#   import ./eval-host.nix { inherit lib; host = "hydra-ai"; modules = [ ... ]; }
# Returns the evalModules result; `.config` is the host's configuration.
{
  lib,
  host,
  modules ? [ ],
}:
let
  pkgs = import ./fake-pkgs.nix { inherit lib; };
in
lib.evalModules {
  specialArgs = {
    modulesPath = "/nonexistent/nixos/modules";
  };
  modules = [
    { _module.args.pkgs = pkgs; }
    ./stubs.nix
    ./stubs-lab.nix
    ../../../modules/coordinator.nix
    (../../../hosts + "/${host}/default.nix")
  ]
  ++ modules;
}
