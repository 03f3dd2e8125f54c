# Evaluate a lab host (hosts/<host>/default.nix) without nixpkgs: the
# module system from nixpkgs' lib, typed option stand-ins, fake pkgs built
# with the host's nixpkgs.config (as NixOS builds pkgs from it).
#   import ./eval-host.nix { inherit lib; host = "hydra-ai"; modules = [ ... ]; }
# Returns the evalModules result; `.config` is the host's configuration.
# `nixpkgsTabbyapi = false` leaves out the stand-in for nixpkgs'
# services.tabbyapi module, which not every nixpkgs has.
{
  lib,
  host,
  modules ? [ ],
  nixpkgsTabbyapi ? true,
}:
lib.evalModules {
  specialArgs = {
    modulesPath = "/nonexistent/nixos/modules";
  };
  modules = [
    (
      { config, ... }:
      {
        _module.args.pkgs = import ./fake-pkgs.nix {
          inherit lib;
          inherit (config.nixpkgs) config;
        };
      }
    )
    ./stubs.nix
    ./stubs-lab.nix
    ../../../modules/coordinator.nix
    (../../../hosts + "/${host}/default.nix")
  ]
  ++ lib.optional nixpkgsTabbyapi ./stubs-nixpkgs-tabbyapi.nix
  ++ modules;
}
