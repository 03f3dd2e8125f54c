# hydra-storage: PostgreSQL, Redis, Qdrant, embeddings, the coordinator,
# Prometheus + Grafana, and Jellyfin transcoding on an Intel Arc A380.
{ ... }:
{
  imports = [
    ../modules.nix
    ./hardware-configuration.nix
  ];

  networking.hostName = "hydra-storage";

  hydra.gpu.intelArc.enable = true;

  system.stateVersion = "26.05";
}
