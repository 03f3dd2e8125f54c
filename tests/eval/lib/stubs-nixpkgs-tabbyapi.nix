# Stand-in for nixpkgs' nixos/modules/services/web-apps/tabbyapi.nix
# (listed in module-list.nix at 0002b50f7049; read at d62277a06632, see
# tests/eval/NIXPKGS-FACTS.md): its options and its `config` section. Whether
# nixos-26.05 has it could not be established, so the evaluation tests run
# the hosts with and without it (eval-host.nix `nixpkgsTabbyapi`).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.tabbyapi;
  yamlFormat = pkgs.formats.yaml { };
  opt = type: default: mkOption { inherit type default; };
in
{
  options.services.tabbyapi = {
    enable = lib.mkEnableOption "tabbyapi";
    package = lib.mkPackageOption pkgs "tabbyapi" { };
    openFirewall = opt types.bool false;
    settings = mkOption {
      default = { };
      type = types.submodule {
        freeformType = yamlFormat.type;
        options = {
          network = {
            host = opt types.str "127.0.0.1";
            port = opt types.port 5000;
            disable_auth = opt types.bool false;
            api_servers = opt (types.listOf types.str) [ "OAI" ];
          };
          logging = {
            log_prompt = opt types.bool false;
            log_requests = opt types.bool false;
          };
          model = {
            model_dir = opt types.str "models";
            model_name = opt (types.nullOr types.str) null;
            max_seq_len = opt (types.nullOr types.int) null;
            cache_mode = opt types.str "FP16";
            gpu_split_auto = opt types.bool true;
            dummy_model_names = opt (types.listOf types.str) [ "gpt-3.5-turbo" ];
          };
        };
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.package.passthru.cudaSupport;
        message = "TabbyAPI requires CUDA support to function. The configured package does not have CUDA enabled.";
      }
    ];
    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.settings.network.port ];
    systemd.services.tabbyapi = {
      enable = true;
      wantedBy = [ "multi-user.target" ];
      description = "TabbyAPI - OAI compatible server for Exllama";
      serviceConfig = {
        ExecStart = "${lib.getExe cfg.package} --config=${yamlFormat.generate "config.yml" cfg.settings}";
        Restart = "on-failure";
        StateDirectory = "tabbyapi";
        WorkingDirectory = "/var/lib/tabbyapi";
        User = "tabbyapi";
        Group = "tabbyapi";
        DynamicUser = true;
      };
    };
  };
}
