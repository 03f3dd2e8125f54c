# Runs the hybrid coordinator on `hydra.lab.coordinatorNode` (the storage
# node by default) with its backends taken from the topology. This module
# only SETS services.hydra-coordinator.* (declared by modules/coordinator.nix)
# and checks that the backends point at nodes that really run them.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = lab.coordinator;
  coord = config.services.hydra-coordinator;
  labLib = import ./lib.nix { inherit lib; };

  nodeByAddress = lib.listToAttrs (
    lib.mapAttrsToList (name: node: lib.nameValuePair node.address (node // { inherit name; })) lab.nodes
  );

  portService =
    port:
    if port == lab.ports.tabbyapi then
      {
        service = "TabbyAPI";
        role = "ai";
      }
    else if port == lab.ports.ollama then
      {
        service = "Ollama";
        role = "compute";
      }
    else
      null;

  backendProblem =
    backend:
    let
      name = backend.name or "<unnamed>";
      url = backend.base_url or "";
      parsed = labLib.parseUrl url;
      node = if parsed == null then null else nodeByAddress.${parsed.host} or null;
      wanted = if parsed == null then null else portService parsed.port;
    in
    if parsed == null then
      "backend \"${name}\": base_url \"${url}\" is not an http(s) URL."
    else if node == null then
      null # not a lab node: a cloud API or another host, nothing to check
    else if wanted == null then
      ''
        backend "${name}" points at ${url}, lab node ${node.name}, but port ${toString parsed.port}
        is neither TabbyAPI (${toString lab.ports.tabbyapi}) nor Ollama (${toString lab.ports.ollama}) there.''
    else if !(lib.elem wanted.role node.roles) then
      ''
        backend "${name}" points at ${url}: that is ${wanted.service} on lab node ${node.name},
        which does not run ${wanted.service} (its roles: ${lib.concatStringsSep ", " node.roles}).
        Point base_url at a node with the "${wanted.role}" role or add that role in hydra.lab.nodes.${node.name}.roles.''
    else
      null;

  credentialProblem =
    backend:
    let
      file = backend.api_key_file or null;
      name = backend.name or "<unnamed>";
    in
    if file == null then
      null
    else if lib.hasPrefix "/" file then
      ''
        backend "${name}": api_key_file = "${file}" is a path; give the bare credential name
        and the file in services.hydra-coordinator.credentials, e.g.
        credentials."${name}-key" = "${file}"; api_key_file = "${name}-key";''
    else
      # A name missing from credentials is reported by modules/coordinator.nix.
      null;

  backends = coord.settings.backends or [ ];
  problems = lib.filter (p: p != null) (
    map backendProblem backends ++ map credentialProblem backends
  );
  usesTabbyKey = lib.any (b: (b.api_key_file or null) == "tabbyapi-api-key") lab.backends;
  onStorage = lab.node != null && lib.elem "storage" lab.node.roles;
  # The lab's data services run on the first node with the storage role.
  storageNode =
    let
      names = lib.attrNames (lib.filterAttrs (_: n: lib.elem "storage" n.roles) lab.nodes);
    in
    if names == [ ] then null else lab.nodes.${lib.head names};
in
{
  options.hydra.lab.coordinator.enable = lib.mkOption {
    type = lib.types.bool;
    default = lab.node != null && lab.coordinatorNode == lab.thisNode;
    defaultText = lib.literalExpression "config.hydra.lab.coordinatorNode == config.hydra.lab.thisNode";
    description = "Whether this host runs the hybrid coordinator for the lab.";
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      services.hydra-coordinator = {
        enable = true;
        listen.address = lib.mkDefault lab.node.address;
        listen.port = lib.mkDefault lab.ports.coordinator;
        credentials = lib.mkMerge [
          { client-api-keys = lib.mkDefault lab.secrets.coordinatorClientKeysFile; }
          (lib.mkIf (storageNode != null) { qdrant-api-key = lib.mkDefault lab.secrets.qdrantApiKeyFile; })
          (lib.mkIf usesTabbyKey { tabbyapi-api-key = lib.mkDefault lab.secrets.tabbyapiApiKeyFile; })
        ];
        settings = {
          backends = lib.mkDefault lab.backends;
          # Not on loopback, so clients must authenticate (spec: auth may
          # only be empty on loopback).
          auth.api_key_files = lib.mkDefault [ "client-api-keys" ];
        };
        # The data services live on the storage node; when the coordinator
        # runs there too, its module creates its database, and it uses the
        # storage role's Redis (see modules/roles/storage.nix). Qdrant is
        # used wherever the coordinator runs.
        database.createLocally = lib.mkDefault onStorage;
        redis.createLocally = lib.mkDefault false;
        # The storage node's Qdrant, which requires its API key.
        qdrant.url = lib.mkIf (storageNode != null) (
          lib.mkDefault "http://${storageNode.address}:${toString lab.ports.qdrantHttp}"
        );
        settings.qdrant.api_key_file = lib.mkIf (storageNode != null) (lib.mkDefault "qdrant-api-key");
        # The lab's embeddings service (modules/lab/embeddings.nix) feeds the
        # knowledge base; without one the coordinator uses its built-in embedder.
        settings.embeddings = lib.mkIf (lab.embeddings.url != null) {
          url = lib.mkDefault lab.embeddings.url;
          model = lib.mkDefault lab.embeddings.model;
        };
      };
      systemd.services.hydra-coordinator = lib.mkIf (lab.embeddings.serverNode == lab.thisNode) {
        after = [ "ollama.service" ];
      };
      hydra.lab.firewall.labTCPPorts = [ coord.listen.port ];
    })

    (lib.mkIf coord.enable {
      assertions = [
        {
          assertion = problems == [ ];
          message = "services.hydra-coordinator.settings.backends:\n" + lib.concatStringsSep "\n" problems;
        }
      ];
    })
  ];
}
