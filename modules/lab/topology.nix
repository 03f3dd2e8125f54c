# The lab's shape, shared by every host: which nodes exist, their addresses
# and roles, which node runs the coordinator, and the ports the lab uses
# between nodes. Every host imports the same facts (hosts/lab.nix) and
# finds itself by `hydra.lab.thisNode` (its hostName).
#
# Firewall: ports registered in `hydra.lab.firewall.labTCPPorts` accept
# connections only from `hydra.lab.lanCidrs`. This uses the nftables
# firewall (networking.firewall.extraInputRules only takes effect with
# networking.nftables.enable, see nixos/modules/services/networking/firewall.nix);
# those ports never go into networking.firewall.allowedTCPPorts.
{ config, lib, ... }:
let
  cfg = config.hydra.lab;
  labLib = import ./lib.nix { inherit lib; };
  inherit (lib) mkOption types;

  roleNames = [
    "ai"
    "compute"
    "storage"
  ];

  nodeType = types.submodule (
    { name, config, ... }:
    {
      options = {
        address = mkOption {
          type = types.str;
          example = "192.168.50.11";
          description = "IPv4 address of node `${name}` on the lab LAN.";
        };
        roles = mkOption {
          type = types.listOf (types.enum roleNames);
          default = [ ];
          example = [ "ai" ];
          description = ''
            Roles node `${name}` runs: `ai` (TabbyAPI), `compute` (Ollama,
            Open WebUI, GPU containers), `storage` (databases, monitoring,
            media, and by default the coordinator).
          '';
        };
        interface = mkOption {
          type = types.nullOr types.str;
          default = null;
          example = "enp5s0";
          description = ''
            Network interface that carries `address`. When set, the node
            gets this address statically (prefix from `hydra.lab.prefixLength`);
            null leaves addressing to the host (DHCP reservation, networkd...).
          '';
        };
        gpuExporter = mkOption {
          type = types.bool;
          default = lib.elem "ai" config.roles || lib.elem "compute" config.roles;
          defaultText = lib.literalExpression ''elem "ai" roles || elem "compute" roles'';
          description = "Whether node `${name}` runs the NVIDIA GPU exporter (scraped by Prometheus).";
        };
      };
    }
  );

  portOption =
    default: what:
    mkOption {
      type = types.port;
      inherit default;
      description = "TCP port of ${what}, used by every node of the lab.";
    };

  nodesWith = role: lib.filterAttrs (_: n: lib.elem role n.roles) cfg.nodes;

  # This node gets its address statically (not from DHCP).
  static = cfg.node != null && cfg.node.interface != null;

  # One backend per node that serves models; plain service names when the
  # lab has a single node of that kind (the usual case).
  backendsFor =
    {
      role,
      service,
      port,
      extra,
    }:
    let
      nodes = nodesWith role;
      single = lib.length (lib.attrNames nodes) == 1;
    in
    lib.mapAttrsToList (
      nodeName: node:
      {
        name = if single then service else "${service}-${nodeName}";
        kind = "local";
        base_url = "http://${node.address}:${toString port}/v1";
        models = [ ];
        price_per_mtok = {
          input = 0.0;
          output = 0.0;
        };
      }
      // extra
    ) nodes;
in
{
  options.hydra.lab = {
    nodes = mkOption {
      type = types.attrsOf nodeType;
      default = { };
      description = "The lab's nodes by host name.";
    };

    lanCidrs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "192.168.50.0/24" ];
      description = ''
        Networks allowed to reach the lab-only ports (model servers,
        databases, exporters, UIs). Nothing else can connect to them.
      '';
    };

    prefixLength = mkOption {
      type = types.ints.between 0 32;
      default = 24;
      description = "Prefix length used when a node's `interface` is set.";
    };

    gateway = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "192.168.50.1";
      description = ''
        Default gateway (the router) of the lab LAN, an IPv4 address inside
        the node's network. Set as `networking.defaultGateway` on every node
        whose `interface` is set (static addressing); DHCP nodes get theirs
        from DHCP. Without one, nothing outside the LAN is reachable: model
        pulls, cloud backends, NTP.
      '';
    };

    nameservers = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "192.168.50.1"
        "9.9.9.9"
      ];
      description = ''
        DNS servers for the nodes with a static `interface`
        (`networking.nameservers`).
      '';
    };

    thisNode = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "Which entry of `hydra.lab.nodes` this host is.";
    };

    coordinatorNode = mkOption {
      type = types.nullOr types.str;
      default =
        let
          storage = lib.attrNames (nodesWith "storage");
        in
        if storage == [ ] then null else lib.head storage;
      defaultText = lib.literalMD "the first node with the `storage` role";
      description = "Node that runs the hybrid coordinator (null: none).";
    };

    ports = {
      tabbyapi = portOption 5000 "TabbyAPI";
      ollama = portOption 11434 "Ollama";
      coordinator = portOption 8092 "the hybrid coordinator";
      openWebui = portOption 8080 "Open WebUI";
      postgresql = portOption 5432 "PostgreSQL";
      redis = portOption 6379 "Redis";
      qdrantHttp = portOption 6333 "Qdrant (HTTP)";
      qdrantGrpc = portOption 6334 "Qdrant (gRPC)";
      embeddings = portOption 8081 "the embeddings service";
      prometheus = portOption 9090 "Prometheus";
      grafana = portOption 3000 "Grafana";
      jellyfin = portOption 8096 "Jellyfin";
      nodeExporter = portOption 9100 "the node exporter";
      nvidiaGpuExporter = portOption 9835 "the NVIDIA GPU exporter";
      postgresExporter = portOption 9187 "the PostgreSQL exporter";
      redisExporter = portOption 9121 "the Redis exporter";
    };

    secrets = {
      tabbyapiApiKeyFile = mkOption {
        type = labLib.secretFile;
        default = "/run/secrets/hydra/tabbyapi-api-key";
        description = ''
          File (an absolute path outside the Nix store) holding TabbyAPI's
          API key. Read on the ai node by TabbyAPI and on the coordinator
          node by the coordinator, both through systemd LoadCredential.
        '';
      };
      coordinatorClientKeysFile = mkOption {
        type = labLib.secretFile;
        default = "/run/secrets/hydra/coordinator-api-keys";
        description = ''
          File (an absolute path outside the Nix store) holding the API keys
          clients (Open WebUI, scripts) present to the coordinator; passed as
          a credential.
        '';
      };
      qdrantApiKeyFile = mkOption {
        type = labLib.secretFile;
        default = "/run/secrets/hydra/qdrant-api-key";
        description = ''
          File (an absolute path outside the Nix store) holding Qdrant's API
          key (the key itself, one line). Qdrant listens on the lab network,
          so it requires this key (its `service.api_key`); the storage node's
          Qdrant and the coordinator read it through systemd LoadCredential.
          Generate once, e.g. `openssl rand -hex 32`.
        '';
      };
    };

    fakeGpuServers = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Replace TabbyAPI and Ollama with the fake OpenAI-compatible server
        (`coordinator/tests/fakes/fake_openai.py`) and skip the NVIDIA driver:
        for VM tests and for trying the lab without GPUs.
      '';
    };

    firewall = {
      labTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
        description = ''
          TCP ports of this host that accept connections only from
          `hydra.lab.lanCidrs`. Role modules add their service ports here.
        '';
      };
      inputRules = mkOption {
        type = types.str;
        readOnly = true;
        description = "The nftables rules generated from `labTCPPorts` and `lanCidrs`.";
      };
    };

    node = mkOption {
      type = types.nullOr types.attrs;
      readOnly = true;
      description = "This host's entry of `hydra.lab.nodes` (null when it has none).";
    };

    backends = mkOption {
      type = types.listOf types.attrs;
      readOnly = true;
      description = ''
        Coordinator backends derived from the topology: TabbyAPI on every
        `ai` node, Ollama on every `compute` node. The coordinator node uses
        them as `services.hydra-coordinator.settings.backends` by default.
      '';
    };

    coordinatorUrl = mkOption {
      type = types.nullOr types.str;
      readOnly = true;
      description = "Base URL (OpenAI `/v1`) of the coordinator as the other nodes reach it.";
    };
  };

  config = lib.mkIf (cfg.nodes != { }) {
    hydra.lab = {
      node = cfg.nodes.${cfg.thisNode} or null;
      firewall.inputRules = labLib.mkInputRules {
        sources = cfg.lanCidrs;
        tcpPorts = cfg.firewall.labTCPPorts;
      };
      backends =
        backendsFor {
          role = "ai";
          service = "tabbyapi";
          port = cfg.ports.tabbyapi;
          extra = {
            api_key_file = "tabbyapi-api-key";
            max_concurrency = 8;
          };
        }
        ++ backendsFor {
          role = "compute";
          service = "ollama";
          port = cfg.ports.ollama;
          extra = {
            api_key_file = null;
            max_concurrency = 4;
          };
        };
      coordinatorUrl =
        if cfg.coordinatorNode == null || !(cfg.nodes ? ${cfg.coordinatorNode}) then
          null
        else
          "http://${cfg.nodes.${cfg.coordinatorNode}.address}:${toString cfg.ports.coordinator}/v1";
    };

    networking.nftables.enable = lib.mkDefault true;
    networking.firewall.extraInputRules = cfg.firewall.inputRules;

    networking.interfaces = lib.mkIf static {
      ${cfg.node.interface}.ipv4.addresses = [
        {
          inherit (cfg.node) address;
          inherit (cfg) prefixLength;
        }
      ];
    };
    networking.defaultGateway = lib.mkIf (static && cfg.gateway != null) {
      address = cfg.gateway;
      inherit (cfg.node) interface;
    };
    networking.nameservers = lib.mkIf static cfg.nameservers;

    assertions =
      let
        worldOpen = lib.intersectLists cfg.firewall.labTCPPorts config.networking.firewall.allowedTCPPorts;
        where = lib.optionalString static "${cfg.thisNode} has the static address ${cfg.node.address}/${toString cfg.prefixLength} on ${cfg.node.interface} (hydra.lab.nodes.${cfg.thisNode}.interface)";
        nodeAddresses = lib.mapAttrsToList (_: n: n.address) cfg.nodes;
      in
      [
        {
          assertion = !static || cfg.gateway != null;
          message = ''
            hydra.lab: ${where}, but hydra.lab.gateway is null: without a default route nothing outside
            the LAN is reachable (model pulls, cloud backends, NTP). Set hydra.lab.gateway to the
            router's address, e.g. "192.168.50.1", or set the interface to null to use DHCP.
          '';
        }
        {
          assertion = !static || cfg.nameservers != [ ];
          message = ''
            hydra.lab: ${where}, but hydra.lab.nameservers is empty: no name resolution (model pulls,
            cloud backends, NTP by name). Set hydra.lab.nameservers, e.g. [ "192.168.50.1" ], or set
            the interface to null to use DHCP.
          '';
        }
        {
          assertion =
            !static
            || cfg.gateway == null
            || labLib.inSubnet cfg.gateway cfg.node.address cfg.prefixLength;
          message = ''
            hydra.lab.gateway = "${toString cfg.gateway}" is not an IPv4 address in the network of
            ${where}: the gateway must be reachable on that link. Use the router's LAN address.
          '';
        }
        {
          assertion = cfg.gateway == null || !(lib.elem cfg.gateway nodeAddresses);
          message = ''
            hydra.lab.gateway = "${toString cfg.gateway}" is the address of a lab node in
            hydra.lab.nodes; it must be the router's address.
          '';
        }
        {
          assertion = cfg.node != null;
          message = ''
            hydra.lab: this host is "${cfg.thisNode}" (hydra.lab.thisNode, from networking.hostName) but
            hydra.lab.nodes only has: ${lib.concatStringsSep ", " (lib.attrNames cfg.nodes)}.
            Add it to hydra.lab.nodes or set hydra.lab.thisNode.
          '';
        }
        {
          assertion = cfg.firewall.labTCPPorts == [ ] || cfg.lanCidrs != [ ];
          message = ''
            hydra.lab.lanCidrs is empty, so the lab-only ports
            ${lib.concatMapStringsSep ", " toString cfg.firewall.labTCPPorts} would accept nobody.
            Set hydra.lab.lanCidrs, e.g. [ "192.168.50.0/24" ].
          '';
        }
        {
          assertion = cfg.firewall.labTCPPorts == [ ] || config.networking.nftables.enable;
          message = ''
            hydra.lab restricts ports to the lab with networking.firewall.extraInputRules,
            which only works with the nftables firewall. Keep networking.nftables.enable = true.
          '';
        }
        {
          assertion = worldOpen == [ ];
          message = ''
            TCP ports ${lib.concatMapStringsSep ", " toString worldOpen} are lab-only
            (hydra.lab.firewall.labTCPPorts) but also in networking.firewall.allowedTCPPorts,
            which opens them to every network. Remove them from allowedTCPPorts (or an openFirewall option).
          '';
        }
        {
          assertion = cfg.coordinatorNode == null || cfg.nodes ? ${cfg.coordinatorNode};
          message = ''
            hydra.lab.coordinatorNode = "${toString cfg.coordinatorNode}" is not in hydra.lab.nodes
            (${lib.concatStringsSep ", " (lib.attrNames cfg.nodes)}).
          '';
        }
      ];
  };
}
