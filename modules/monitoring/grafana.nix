# Grafana on the monitoring host, provisioned with the Prometheus and
# PostgreSQL (coordinator database) datasources and the coordinator
# dashboard. Secrets come from files through systemd credentials and
# Grafana's $__file{} expansion: nothing secret in the store.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = config.hydra.monitoring.grafana;
  credDir = "/run/credentials/grafana.service";
in
{
  options.hydra.monitoring.grafana = {
    secretKeyFile = lib.mkOption {
      type = lib.types.str;
      default = "/run/secrets/hydra/grafana-secret-key";
      description = ''
        File with Grafana's `security.secret_key` (signs cookies, encrypts
        datasource secrets; no default since NixOS 26.05). Generate once with
        `openssl rand -hex 32`.
      '';
    };
    adminPasswordFile = lib.mkOption {
      type = lib.types.str;
      default = "/run/secrets/hydra/grafana-admin-password";
      description = "File with the Grafana `admin` password.";
    };
    database = lib.mkOption {
      type = lib.types.str;
      default = config.hydra.roles.storage.telemetryRetention.database;
      defaultText = lib.literalExpression "config.hydra.roles.storage.telemetryRetention.database";
      description = "Coordinator database the PostgreSQL datasource reads (as the `grafana` role, peer auth).";
    };
  };

  config = lib.mkIf config.hydra.monitoring.server.enable {
    services.grafana = {
      enable = true;
      settings = {
        server = {
          http_addr = lib.mkDefault lab.node.address;
          http_port = lib.mkDefault lab.ports.grafana;
        };
        security = {
          secret_key = "$__file{${credDir}/secret_key}";
          admin_password = "$__file{${credDir}/admin_password}";
        };
        analytics.reporting_enabled = lib.mkDefault false;
      };
      provision = {
        enable = true;
        datasources.settings.datasources = [
          {
            name = "Prometheus";
            type = "prometheus";
            uid = "prometheus";
            url = "http://127.0.0.1:${toString lab.ports.prometheus}";
            isDefault = true;
          }
          {
            name = "PostgreSQL";
            type = "grafana-postgresql-datasource";
            uid = "postgresql";
            url = "/run/postgresql";
            user = "grafana";
            jsonData = {
              database = cfg.database;
              sslmode = "disable";
            };
          }
        ];
        dashboards.settings.providers = [
          {
            name = "hydra";
            options.path = ./dashboards;
            disableDeletion = true;
          }
        ];
      };
    };
    systemd.services.grafana = {
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig.LoadCredential = [
        "secret_key:${cfg.secretKeyFile}"
        "admin_password:${cfg.adminPasswordFile}"
      ];
    };
    hydra.lab.firewall.labTCPPorts = [ lab.ports.grafana ];
  };
}
