# STAND-IN for modules/coordinator.nix (branch `nix`), so the lab's eval
# tests run before the merge: the option interface of the shared contract
# (spec.md, "NixOS module services.hydra-coordinator") with the same types,
# plus the one bit of behaviour the lab tests look at: credentials become
# LoadCredential entries of hydra-coordinator.service. At merge the lead
# replaces this file's use in tests/eval/lib/eval-host.nix with
# ../../../modules/coordinator.nix (hosts/modules.nix already imports it
# when it exists).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.services.hydra-coordinator;
  inherit (lib) mkOption types;
in
{
  options.services.hydra-coordinator = {
    enable = lib.mkEnableOption "the Hydra hybrid coordinator";
    package = mkOption {
      type = types.package;
      default = pkgs.hydra-coordinator or {
        type = "derivation";
        name = "hydra-coordinator";
        outPath = "/nix/store/fake-hydra-coordinator";
        meta.mainProgram = "hydra-coordinator";
      };
    };
    settings = mkOption {
      type = types.submodule { freeformType = (pkgs.formats.json { }).type; };
      default = { };
    };
    listen.address = mkOption {
      type = types.str;
      default = "127.0.0.1";
    };
    listen.port = mkOption {
      type = types.port;
      default = 8092;
    };
    openFirewall = mkOption {
      type = types.bool;
      default = false;
    };
    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
    };
    environmentFile = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
    database.createLocally = mkOption {
      type = types.bool;
      default = false;
    };
    redis.createLocally = mkOption {
      type = types.bool;
      default = false;
    };
    qdrant.url = mkOption {
      type = types.nullOr types.str;
      default = null;
    };
  };

  config = lib.mkIf cfg.enable {
    systemd.services.hydra-coordinator = {
      wantedBy = [ "multi-user.target" ];
      serviceConfig.LoadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") cfg.credentials;
    };
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.listen.port ];
  };
}
