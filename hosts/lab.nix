# Facts shared by every lab host: who is who on the LAN. Imported by each
# hosts/<name>/default.nix; tests/lab/topology.json mirrors it (checked by
# tests/eval/test-lab-topology.nix). Change addresses and roles here.
{
  hydra.lab = {
    lanCidrs = [ "192.168.50.0/24" ];
    prefixLength = 24;
    # The router: default route and DNS for the nodes with a static address
    # (hydra.lab.nodes.<name>.interface).
    gateway = "192.168.50.1";
    nameservers = [ "192.168.50.1" ];
    nodes = {
      hydra-storage = {
        address = "192.168.50.10";
        roles = [ "storage" ];
      };
      hydra-ai = {
        address = "192.168.50.11";
        roles = [ "ai" ];
      };
      hydra-compute = {
        address = "192.168.50.12";
        roles = [ "compute" ];
      };
    };
    coordinatorNode = "hydra-storage";
  };
}
