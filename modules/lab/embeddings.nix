# The lab's embeddings service, shared by every host: which node serves it,
# with which model, and the URL the coordinator uses (its
# `settings.embeddings`, see modules/lab/coordinator.nix).
#
# The service is Ollama's OpenAI-compatible `/v1/embeddings` endpoint, run
# by nixpkgs' own services.ollama module:
#   - "storage" (default): a CPU-only Ollama (pkgs.ollama-cpu) on the storage
#     node that serves nothing but the embedding model, so embeddings keep
#     working while the GPUs are busy or the compute node is down. It listens
#     on 127.0.0.1 when the coordinator runs on the same node.
#   - "compute": the compute node's GPU Ollama also serves the embedding model.
#   - "none": the coordinator embeds with its built-in embedder.
# See docs/lab.md ("Embeddings") for why not text-embeddings-inference.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = lab.embeddings;
  inherit (lib) mkOption types;

  firstWith =
    role:
    let
      names = lib.attrNames (lib.filterAttrs (_: n: lib.elem role n.roles) lab.nodes);
    in
    if names == [ ] then null else lib.head names;

  serverNode =
    if cfg.provider == "storage" then
      firstWith "storage"
    else if cfg.provider == "compute" then
      firstWith "compute"
    else
      null;
  server = if serverNode == null then null else lab.nodes.${serverNode};
  # A node that runs Ollama for the compute role serves embeddings from that
  # Ollama (one services.ollama per host).
  onComputeOllama = server != null && lib.elem "compute" server.roles;
  port = if onComputeOllama then lab.ports.ollama else lab.ports.embeddings;
  loopback = !onComputeOllama && serverNode == lab.coordinatorNode;
  listenAddress = if loopback then "127.0.0.1" else server.address;

  oldProvider = [
    "hydra"
    "roles"
    "storage"
    "embeddings"
    "provider"
  ];
in
{
  imports = [
    (lib.mkChangedOptionModule oldProvider
      [
        "hydra"
        "lab"
        "embeddings"
        "provider"
      ]
      (
        config:
        {
          "text-embeddings-inference" = "storage";
          ollama = "compute";
          none = "none";
        }
        .${lib.getAttrFromPath oldProvider config}
      )
    )
    (lib.mkRenamedOptionModule
      [ "hydra" "roles" "storage" "embeddings" "model" ]
      [ "hydra" "lab" "embeddings" "model" ]
    )
    (lib.mkRemovedOptionModule [
      "hydra"
      "roles"
      "storage"
      "embeddings"
      "url"
    ] "Read hydra.lab.embeddings.url instead.")
  ];

  options.hydra.lab.embeddings = {
    provider = mkOption {
      type = types.enum [
        "storage"
        "compute"
        "none"
      ];
      default = "storage";
      description = ''
        Which node serves embeddings for the coordinator's knowledge base:
        `storage`, a CPU-only Ollama on the first node with the `storage`
        role (independent of the GPUs); `compute`, the GPU Ollama of the
        first node with the `compute` role; `none`, the coordinator's
        built-in embedder (no service).
      '';
    };

    model = mkOption {
      type = types.strMatching "[^[:space:]]+";
      default = "nomic-embed-text";
      example = "mxbai-embed-large";
      description = ''
        Ollama embedding model (from <https://ollama.com/library>), pulled by
        `ollama-model-loader.service` on the serving node at start (needs
        network once) and sent as `model` by the coordinator.
      '';
    };

    serverNode = mkOption {
      type = types.nullOr types.str;
      readOnly = true;
      default = serverNode;
      defaultText = lib.literalMD "the first node with the role `provider` names, `null` for `none`";
      description = "The node of `hydra.lab.nodes` that serves embeddings.";
    };

    listenAddress = mkOption {
      type = types.nullOr types.str;
      readOnly = true;
      default = if server == null then null else listenAddress;
      defaultText = lib.literalMD ''
        `127.0.0.1` when the coordinator runs on the serving node, its lab
        address otherwise
      '';
      description = "Address the embeddings service listens on.";
    };

    url = mkOption {
      type = types.nullOr types.str;
      readOnly = true;
      default = if server == null then null else "http://${listenAddress}:${toString port}/v1";
      defaultText = lib.literalMD "the OpenAI-compatible API root of the service, `null` for `none`";
      description = ''
        Base URL (OpenAI `/v1`, serving `POST /embeddings`) of the embeddings
        service as the coordinator reaches it; the coordinator node sets
        `services.hydra-coordinator.settings.embeddings.url` to it.
      '';
    };
  };

  config = lib.mkIf (lab.nodes != { }) {
    assertions = [
      {
        assertion = cfg.provider == "none" || serverNode != null;
        message = ''
          hydra.lab.embeddings.provider = "${cfg.provider}" but no node in hydra.lab.nodes has the
          "${cfg.provider}" role. Add the role to a node, or set hydra.lab.embeddings.provider = "none"
          (the coordinator then uses its built-in embedder).
        '';
      }
    ];
  };
}
