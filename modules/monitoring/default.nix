# nixosModules.monitoring: exporters on every lab node; Prometheus (with
# the alert rules in alerts.yml) and Grafana (with the coordinator
# dashboard) on the storage node.
{
  imports = [
    ./exporters.nix
    ./prometheus.nix
    ./grafana.nix
  ];
}
