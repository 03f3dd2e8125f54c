# Prometheus on the storage node: scrapes every exporter of every lab node
# (derived from hydra.lab.nodes) and the coordinator, and loads alerts.yml.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = config.hydra.monitoring.server;
  nodesWith = pred: lib.filterAttrs (_: pred) lab.nodes;
  targets = nodes: port: lib.mapAttrsToList (name: n: {
    targets = [ "${n.address}:${toString port}" ];
    labels.node = name;
  }) nodes;
  job = name: nodes: port: {
    job_name = name;
    static_configs = targets nodes port;
  };
  storageNodes = nodesWith (n: lib.elem "storage" n.roles);
in
{
  options.hydra.monitoring.server = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = config.hydra.roles.storage.enable;
      defaultText = lib.literalExpression "config.hydra.roles.storage.enable";
      description = "Run Prometheus and Grafana for the lab on this host.";
    };
    retentionTime = lib.mkOption {
      type = lib.types.str;
      default = "30d";
      description = "How long Prometheus keeps samples.";
    };
  };

  config = lib.mkIf cfg.enable {
    services.prometheus = {
      enable = true;
      port = lab.ports.prometheus;
      retentionTime = lib.mkDefault cfg.retentionTime;
      globalConfig.scrape_interval = lib.mkDefault "15s";
      ruleFiles = [ ./alerts.yml ];
      scrapeConfigs =
        [
          (job "node" lab.nodes lab.ports.nodeExporter)
          (job "nvidia_gpu" (nodesWith (n: n.gpuExporter && !lab.fakeGpuServers)) lab.ports.nvidiaGpuExporter)
          (job "postgres" storageNodes lab.ports.postgresExporter)
          (job "redis" storageNodes lab.ports.redisExporter)
        ]
        ++ lib.optional (lab.coordinatorNode != null) (
          job "hydra-coordinator" (lib.getAttrs [ lab.coordinatorNode ] lab.nodes) lab.ports.coordinator
          // {
            metrics_path = "/metrics";
          }
        );
    };
    hydra.lab.firewall.labTCPPorts = [ lab.ports.prometheus ];
  };
}
