# Role "ai": TabbyAPI (hydra.tabbyapi, modules/tabbyapi.nix) on the node's
# NVIDIA cards, split across all of them (RTX 5090 32 GB + RTX 4090 24 GB in
# the reference lab), reachable only from the lab. The model itself is a
# host fact: set hydra.roles.ai.model.name and put the model folder in
# hydra.tabbyapi.modelDir.
{ config, lib, ... }:
let
  lab = config.hydra.lab;
  cfg = config.hydra.roles.ai;
  gpus = config.hydra.gpu.nvidia.gpus;
in
{
  options.hydra.roles.ai = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = lab.node != null && lib.elem "ai" lab.node.roles;
      defaultText = lib.literalExpression ''elem "ai" config.hydra.lab.node.roles'';
      description = "Whether this host serves models with TabbyAPI.";
    };
    model = {
      name = lib.mkOption {
        type = lib.types.nullOr lib.types.str;
        default = null;
        example = "Qwen3-32B-exl3-6.0bpw";
        description = "Model folder (under hydra.tabbyapi.modelDir) loaded at start; null loads nothing.";
      };
      maxSeqLen = lib.mkOption {
        type = lib.types.nullOr lib.types.ints.positive;
        default = 32768;
        description = "Context length (`model.max_seq_len`).";
      };
      cacheMode = lib.mkOption {
        # the values TabbyAPI's config model accepts (see modules/tabbyapi.nix)
        type = lib.types.strMatching "FP16|Q8|Q6|Q4|[2-8][[:space:]]*,[[:space:]]*[2-8]";
        default = "8,8";
        example = "Q8";
        description = ''
          KV cache mode (`model.cache_mode`). For exl3 models (ExLlamaV3, the
          default model here) a `"k_bits,v_bits"` pair with bits from 2 to 8,
          e.g. `"8,8"`; for exl2 models `FP16`, `Q8`, `Q6` or `Q4` (a pair
          falls back to an FP16 cache there).
        '';
      };
    };
    vramReserveGiB = lib.mkOption {
      type = lib.types.ints.unsigned;
      default = 2;
      description = "VRAM left free on every card (CUDA context, activations) when computing `model.gpu_split`.";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      (lib.mkIf (!lab.fakeGpuServers) {
        hydra.gpu.nvidia.enable = lib.mkDefault true;
        hydra.gpu.nvidia.services = [ "hydra-tabbyapi" ];

        hydra.tabbyapi = {
          enable = true;
          host = lib.mkDefault lab.node.address;
          port = lib.mkDefault lab.ports.tabbyapi;
          apiKeyFile = lib.mkDefault lab.secrets.tabbyapiApiKeyFile;
          settings.model = {
            model_name = lib.mkDefault cfg.model.name;
            max_seq_len = lib.mkDefault cfg.model.maxSeqLen;
            cache_mode = lib.mkDefault cfg.model.cacheMode;
            # A fixed split uses both cards predictably; autosplit fills GPU 0 first.
            gpu_split_auto = lib.mkDefault (lib.length gpus < 2);
            gpu_split = lib.mkDefault (map (g: lib.max 1 (g.memoryGiB - cfg.vramReserveGiB)) gpus);
          };
        };
        hydra.lab.firewall.labTCPPorts = [ config.hydra.tabbyapi.port ];
      })
    ]
  );
}
