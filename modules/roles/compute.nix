# Role "compute": Ollama (CUDA build) spread over all NVIDIA cards,
# listening only on the lab address; Open WebUI talking to the
# coordinator; OCI containers with GPUs through CDI for software nixpkgs
# does not package.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  lab = config.hydra.lab;
  cfg = config.hydra.roles.compute;
  labLib = import ../lab/lib.nix { inherit lib; };
  gpus = config.hydra.gpu.nvidia.gpus;
in
{
  options.hydra.roles.compute = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = lab.node != null && lib.elem "compute" lab.node.roles;
      defaultText = lib.literalExpression ''elem "compute" config.hydra.lab.node.roles'';
      description = "Whether this host runs Ollama, Open WebUI and GPU containers.";
    };
    models = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "qwen3:14b"
        "nomic-embed-text"
      ];
      description = "Models pulled at start (services.ollama.loadModels; needs network).";
    };
    numParallel = lib.mkOption {
      type = lib.types.ints.positive;
      default = 4;
      description = "Parallel requests per loaded model (OLLAMA_NUM_PARALLEL).";
    };
    keepAlive = lib.mkOption {
      type = lib.types.str;
      default = "30m";
      description = "How long an idle model stays in VRAM (OLLAMA_KEEP_ALIVE).";
    };
    flashAttention = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "OLLAMA_FLASH_ATTENTION.";
    };
    openWebui = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = "Run Open WebUI against the coordinator.";
      };
      environmentFile = lib.mkOption {
        type = lib.types.nullOr labLib.secretFile;
        default = null;
        example = "/run/secrets/open-webui.env";
        description = ''
          Secrets for Open WebUI (an absolute path outside the Nix store),
          e.g. `OPENAI_API_KEY=<a coordinator client key>` and
          `WEBUI_SECRET_KEY=...`.
        '';
      };
    };
    gpuContainers = lib.mkOption {
      type = lib.types.attrsOf (
        lib.types.submodule {
          options = {
            image = lib.mkOption {
              type = lib.types.str;
              description = "OCI image.";
            };
            ports = lib.mkOption {
              type = lib.types.listOf lib.types.port;
              default = [ ];
              description = "Container ports published on the host (same number), lab-only.";
            };
            volumes = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              default = [ ];
              description = "Volumes (`host:container`).";
            };
            environment = lib.mkOption {
              type = lib.types.attrsOf lib.types.str;
              default = { };
              description = "Environment (no secrets: use environmentFiles).";
            };
            environmentFiles = lib.mkOption {
              type = lib.types.listOf labLib.secretFile;
              default = [ ];
              description = "Environment files with secrets (absolute paths outside the Nix store).";
            };
            cmd = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              default = [ ];
              description = "Command arguments.";
            };
          };
        }
      );
      default = { };
      example = lib.literalExpression ''
        {
          speaches = {
            image = "ghcr.io/speaches-ai/speaches:latest-cuda";
            ports = [ 8000 ];
            volumes = [ "/var/lib/speaches:/home/ubuntu/.cache/huggingface/hub" ];
          };
        }
      '';
      description = "Containers that get every NVIDIA GPU through CDI (`nvidia.com/gpu=all`).";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (lib.mkIf (!lab.fakeGpuServers) {
        hydra.gpu.nvidia.enable = lib.mkDefault true;
        hydra.gpu.nvidia.services = [ "ollama" ];

        services.ollama = {
          enable = true;
          # `acceleration` is gone; the package picks the backend.
          package = lib.mkDefault pkgs.ollama-cuda;
          host = lib.mkDefault lab.node.address;
          port = lib.mkDefault lab.ports.ollama;
          # plus the lab's embedding model when this node serves embeddings
          # (modules/lab/embeddings.nix)
          loadModels =
            cfg.models
            ++ lib.optional (lab.embeddings.serverNode == lab.thisNode) lab.embeddings.model;
          environmentVariables = {
            OLLAMA_SCHED_SPREAD = lib.mkDefault "1";
            OLLAMA_NUM_PARALLEL = lib.mkDefault (toString cfg.numParallel);
            OLLAMA_KEEP_ALIVE = lib.mkDefault cfg.keepAlive;
            OLLAMA_FLASH_ATTENTION = lib.mkDefault (if cfg.flashAttention then "1" else "0");
            CUDA_VISIBLE_DEVICES = lib.mkDefault (
              lib.concatMapStringsSep "," toString (lib.genList (i: i) (lib.length gpus))
            );
          };
        };
        # Ollama binds the lab address, which must exist first.
        systemd.services.ollama = {
          after = [ "network-online.target" ];
          wants = [ "network-online.target" ];
        };
        hydra.lab.firewall.labTCPPorts = [ config.services.ollama.port ];
      })

      (lib.mkIf cfg.openWebui.enable {
        services.open-webui = {
          enable = true;
          host = lib.mkDefault lab.node.address;
          port = lib.mkDefault lab.ports.openWebui;
          environmentFile = cfg.openWebui.environmentFile;
          # Setting `environment` replaces the module's default, so the
          # telemetry opt-outs are repeated here.
          environment = {
            ANONYMIZED_TELEMETRY = lib.mkDefault "False";
            DO_NOT_TRACK = lib.mkDefault "True";
            SCARF_NO_ANALYTICS = lib.mkDefault "True";
            OPENAI_API_BASE_URL = lib.mkDefault lab.coordinatorUrl;
            ENABLE_OLLAMA_API = lib.mkDefault "False";
          };
        };
        systemd.services.open-webui = {
          after = [ "network-online.target" ];
          wants = [ "network-online.target" ];
        };
        hydra.lab.firewall.labTCPPorts = [ config.services.open-webui.port ];
      })

      (lib.mkIf (cfg.gpuContainers != { }) {
        virtualisation.podman.enable = lib.mkDefault true;
        virtualisation.oci-containers.backend = lib.mkDefault "podman";
        virtualisation.oci-containers.containers = lib.mapAttrs (_: c: {
          inherit (c)
            image
            volumes
            environment
            environmentFiles
            cmd
            ;
          ports = map (p: "${lab.node.address}:${toString p}:${toString p}") c.ports;
          devices = [ "nvidia.com/gpu=all" ];
        }) cfg.gpuContainers;
        hydra.lab.firewall.labTCPPorts = lib.concatMap (c: c.ports) (lib.attrValues cfg.gpuContainers);
      })

      {
        assertions = [
          {
            assertion = !cfg.openWebui.enable || lab.coordinatorUrl != null;
            message = "hydra.roles.compute.openWebui needs a coordinator: set hydra.lab.coordinatorNode.";
          }
        ];
      }
    ]
  );
}
