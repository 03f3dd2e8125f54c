# nixosModules.lab: the lab topology, the firewall that keeps lab ports
# on the LAN, the coordinator wiring and the fake GPU servers for tests.
{
  imports = [
    ./topology.nix
    ./coordinator.nix
    ./fake-gpu-servers.nix
  ];
}
