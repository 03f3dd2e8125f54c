# The flake's reusable modules (nixosModules.*) used the way other people's
# hosts use them: with a nixpkgs instance built outside (nixpkgs.pkgs, as
# with `nixpkgs.pkgs = ...` or the NixOS test driver). nixpkgs then refuses
# any nixpkgs.config definition (nixos/modules/misc/nixpkgs.nix: "Your system
# configures nixpkgs with an externally created instance"), so no module of
# ours may set nixpkgs.config; the hosts do.
{ lib }:
let
  pkgs = import ./lib/fake-pkgs.nix { inherit lib; };

  evalNode =
    hostName: extra:
    (lib.evalModules {
      specialArgs.modulesPath = "/nonexistent/nixos/modules";
      modules = [
        {
          _module.args.pkgs = pkgs;
          nixpkgs.pkgs = pkgs;
          networking.hostName = hostName;
          system.stateVersion = "26.05";
        }
        ./lib/stubs.nix
        ./lib/stubs-lab.nix
        ../../modules/coordinator.nix
        ../../modules/lab
        ../../modules/gpu
        ../../modules/tabbyapi.nix
        ../../modules/roles
        ../../modules/monitoring
        ../../hosts/lab.nix
        extra
      ];
    }).config;

  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);

  card = {
    name = "RTX 5090";
    architecture = "blackwell";
    memoryGiB = 32;
  };
in
{
  testModulesLeaveNixpkgsConfigAlone = {
    expr = map (c: failed c ++ lib.optional (c.nixpkgs.config != { }) "nixpkgs.config is set") [
      (evalNode "hydra-ai" { hydra.gpu.nvidia.gpus = [ card ]; })
      (evalNode "hydra-compute" { hydra.gpu.nvidia.gpus = [ card ]; })
      (evalNode "hydra-storage" { hydra.gpu.intelArc.enable = true; })
    ];
    expected = [
      [ ]
      [ ]
      [ ]
    ];
  };

  # CUDA builds come from the packages themselves, not from a global switch.
  testCudaPackagesWithoutGlobalCudaSupport = {
    expr =
      let
        ai = evalNode "hydra-ai" { hydra.gpu.nvidia.gpus = [ card ]; };
        compute = evalNode "hydra-compute" { hydra.gpu.nvidia.gpus = [ card ]; };
      in
      {
        tabbyapi = ai.hydra.tabbyapi.package.passthru.cudaSupport;
        ollama = lib.getName compute.services.ollama.package;
        global = pkgs.config.cudaSupport;
      };
    expected = {
      tabbyapi = true;
      ollama = "ollama-cuda";
      global = false;
    };
  };
}
