# Topology helpers and the consistency of tests/lab/topology.json (used by
# the netns lab test) with hosts/lab.nix.
{ lib }:
let
  labLib = import ../../modules/lab/lib.nix { inherit lib; };
  storage = (import ./lib/eval-host.nix {
    inherit lib;
    host = "hydra-storage";
  }).config;
  json = lib.importJSON ../lab/topology.json;
in
{
  testRulesOnlyFromSources = {
    expr = labLib.mkInputRules {
      sources = [ "10.0.0.0/24" ];
      tcpPorts = [
        6379
        22
        6379
      ];
    };
    expected = "ip saddr { 10.0.0.0/24 } tcp dport { 22, 6379 } accept";
  };
  testRulesIPv4AndIPv6 = {
    expr = labLib.mkInputRules {
      sources = [
        "192.168.1.0/24"
        "fd00:1::/64"
      ];
      tcpPorts = [ 5432 ];
    };
    expected = "ip saddr { 192.168.1.0/24 } tcp dport { 5432 } accept\nip6 saddr { fd00:1::/64 } tcp dport { 5432 } accept";
  };
  testNoPortsNoRules = {
    expr = labLib.mkInputRules {
      sources = [ "10.0.0.0/8" ];
      tcpPorts = [ ];
    };
    expected = "";
  };
  testParseUrl = {
    expr = map labLib.parseUrl [
      "http://192.168.50.11:5000/v1"
      "https://api.openai.com/v1"
      "http://[fd00::1]:11434"
      "not a url"
    ];
    expected = [
      {
        scheme = "http";
        host = "192.168.50.11";
        port = 5000;
      }
      {
        scheme = "https";
        host = "api.openai.com";
        port = 443;
      }
      {
        scheme = "http";
        host = "fd00::1";
        port = 11434;
      }
      null
    ];
  };
  testParseIPv4 = {
    expr = map labLib.parseIPv4 [
      "192.168.50.1"
      "10.0.0.010"
      "256.1.1.1"
      "1.2.3"
      "fd00::1"
    ];
    expected = [
      3232248321
      167772170
      null
      null
      null
    ];
  };
  testInSubnet = {
    expr = [
      (labLib.inSubnet "192.168.50.1" "192.168.50.10" 24)
      (labLib.inSubnet "192.168.51.1" "192.168.50.10" 24)
      (labLib.inSubnet "10.200.0.1" "10.0.0.5" 8)
      (labLib.inSubnet "10.0.0.6" "10.0.0.5" 32)
      (labLib.inSubnet "10.0.0.6" "10.0.0.5" 0)
      (labLib.inSubnet "router" "10.0.0.5" 8)
    ];
    expected = [
      true
      false
      true
      false
      true
      false
    ];
  };
  testTopologyJsonMatchesNix = {
    expr = {
      inherit (json) lanCidrs prefixLength coordinatorNode;
      nodes = lib.mapAttrs (_: n: { inherit (n) address roles; }) json.nodes;
      ports = lib.getAttrs (lib.attrNames json.ports) storage.hydra.lab.ports;
    };
    expected = {
      inherit (storage.hydra.lab) lanCidrs prefixLength coordinatorNode;
      nodes = lib.mapAttrs (_: n: { inherit (n) address roles; }) storage.hydra.lab.nodes;
      ports = json.ports;
    };
  };
}
