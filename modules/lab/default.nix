# nixosModules.lab: the lab topology, the firewall that keeps lab ports
# on the LAN, the coordinator wiring, the embeddings service and the fake
# GPU servers for tests.
{
  imports = [
    ./topology.nix
    ./coordinator.nix
    ./embeddings.nix
    ./fake-gpu-servers.nix
  ];
}
