# Grafana on the monitoring host, provisioned with the Prometheus and
# PostgreSQL (coordinator database) datasources and the coordinator
# dashboard. Secrets come from files through systemd credentials and
# Grafana's $__file{} expansion: nothing secret in the store.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = config.hydra.monitoring.grafana;
  credDir = "/run/credentials/grafana.service";
  labLib = import ../lab/lib.nix { inherit lib; };

  # The `grafana` role (peer auth over the socket) may read the coordinator's
  # tables: those that exist (GRANT ... ON ALL TABLES) and those its owner
  # creates later (ALTER DEFAULT PRIVILEGES FOR ROLE <owner>). Read-only.
  grantsSql = ''
    SELECT pg_catalog.pg_get_userbyid(datdba) AS owner FROM pg_catalog.pg_database
      WHERE datname = current_database() \gset
    GRANT CONNECT ON DATABASE :"DBNAME" TO grafana;
    GRANT USAGE ON SCHEMA public TO grafana;
    GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana;
    ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
  '';
in
{
  options.hydra.monitoring.grafana = {
    secretKeyFile = lib.mkOption {
      type = labLib.secretFile;
      default = "/run/secrets/hydra/grafana-secret-key";
      description = ''
        File (an absolute path outside the Nix store) with Grafana's
        `security.secret_key` (signs cookies, encrypts
        datasource secrets; no default since NixOS 26.05). Generate once with
        `openssl rand -hex 32`.
      '';
    };
    adminPasswordFile = lib.mkOption {
      type = labLib.secretFile;
      default = "/run/secrets/hydra/grafana-admin-password";
      description = "File (an absolute path outside the Nix store) with the Grafana `admin` password.";
    };
    database = lib.mkOption {
      type = lib.types.strMatching "[A-Za-z0-9_-]+";
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
    # Grafana's PostgreSQL datasource reads the coordinator's database as
    # the `grafana` role (created by the storage role), which needs SELECT.
    systemd.services.hydra-grafana-db-grants = lib.mkIf config.services.postgresql.enable (
      lib.mkMerge [
        (labLib.mkPsqlService {
          description = "Let Grafana's PostgreSQL role read the coordinator's tables";
          inherit (config.services.postgresql) package;
          inherit (cfg) database;
          sql = grantsSql;
        })
        {
          wantedBy = [ "multi-user.target" ];
          # before the coordinator creates its tables, so the default
          # privileges already cover them
          before = [
            "grafana.service"
            "hydra-coordinator.service"
          ];
          serviceConfig.RemainAfterExit = true;
        }
      ]
    );
    hydra.lab.firewall.labTCPPorts = [ lab.ports.grafana ];
  };
}
