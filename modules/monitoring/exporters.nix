# Exporters on every lab node: node_exporter everywhere, the NVIDIA GPU
# exporter (utkuozdemir/nvidia_gpu_exporter, nvidia_smi_* metrics) where
# the NVIDIA driver runs, PostgreSQL and Redis exporters next to those
# services. All listen on the lab only (firewall), never the world.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = config.hydra.monitoring.exporters;
in
{
  options.hydra.monitoring.exporters.enable = lib.mkOption {
    type = lib.types.bool;
    default = lab.node != null;
    defaultText = lib.literalExpression "config.hydra.lab.node != null";
    description = "Run the Prometheus exporters this lab node should have.";
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        services.prometheus.exporters.node = {
          enable = true;
          port = lab.ports.nodeExporter;
          enabledCollectors = [ "systemd" ];
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.nodeExporter ];
      }
      (lib.mkIf config.hydra.gpu.nvidia.enable {
        services.prometheus.exporters.nvidia-gpu = {
          enable = true;
          port = lab.ports.nvidiaGpuExporter;
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.nvidiaGpuExporter ];
      })
      (lib.mkIf config.services.postgresql.enable {
        services.prometheus.exporters.postgres = {
          enable = true;
          port = lab.ports.postgresExporter;
          # Peer authentication as the postgres superuser over the socket:
          # no password to manage.
          runAsLocalSuperUser = true;
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.postgresExporter ];
      })
      # The storage role's Redis (modules/roles/storage.nix); the role is
      # checked first so that other nodes never look at servers.hydra.
      (lib.mkIf (config.hydra.roles.storage.enable && config.services.redis.servers.hydra.enable) {
        services.prometheus.exporters.redis = {
          enable = true;
          port = lab.ports.redisExporter;
          extraFlags = [ "--redis.addr=redis://127.0.0.1:${toString config.services.redis.servers.hydra.port}" ];
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.redisExporter ];
      })
    ]
  );
}
