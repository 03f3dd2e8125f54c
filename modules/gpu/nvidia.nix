# Headless NVIDIA setup for CUDA servers that mix Blackwell (RTX 50xx) and
# Ada (RTX 40xx) cards: open kernel module (Blackwell only works with it),
# a >= 570 driver branch, the persistence daemon, no X server, per-GPU power
# limits, CDI for containers, and GPU device access for chosen services.
{ config, lib, ... }:
let
  cfg = config.hydra.gpu.nvidia;
  inherit (lib) mkOption types;
  nvidiaSmi = "${lib.getBin config.hardware.nvidia.package}/bin/nvidia-smi";

  gpuType = types.submodule {
    options = {
      name = mkOption {
        type = types.str;
        example = "RTX 5090";
        description = "Human name of the card (documentation and messages only).";
      };
      architecture = mkOption {
        type = types.enum [
          "turing"
          "ampere"
          "ada"
          "hopper"
          "blackwell"
          "other"
        ];
        default = "other";
        description = "GPU generation; Blackwell requires the open kernel module.";
      };
      memoryGiB = mkOption {
        type = types.ints.positive;
        example = 32;
        description = "VRAM of the card in GiB (used to split models across cards).";
      };
      powerLimitWatts = mkOption {
        type = types.nullOr types.ints.positive;
        default = null;
        example = 450;
        description = "Power limit applied at boot with `nvidia-smi -i INDEX -pl WATTS` (null: leave the default).";
      };
    };
  };

  limited = lib.filter (g: g.value.powerLimitWatts != null) (
    lib.imap0 (index: value: { inherit index value; }) cfg.gpus
  );
in
{
  options.hydra.gpu.nvidia = {
    enable = lib.mkEnableOption "the headless NVIDIA driver and CUDA device access";

    gpus = mkOption {
      type = types.listOf gpuType;
      default = [ ];
      description = ''
        The NVIDIA cards of this host in PCI bus order, which is the CUDA
        order because services get `CUDA_DEVICE_ORDER=PCI_BUS_ID`: the
        first entry is CUDA device 0 and `nvidia-smi -i 0`.
      '';
    };

    minDriverVersion = mkOption {
      type = types.str;
      default = "570";
      description = "Oldest acceptable driver version (570 is the first branch with RTX 50xx support).";
    };

    services = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "ollama" ];
      description = ''
        systemd services that get the NVIDIA devices (`DeviceAllow`,
        `PrivateDevices = false`, as nixpkgs' ollama module does),
        `CUDA_DEVICE_ORDER=PCI_BUS_ID`, and start after the power limits.
      '';
    };

    deviceAllow = mkOption {
      type = types.listOf types.str;
      readOnly = true;
      default = [
        "char-nvidiactl"
        "char-nvidia-caps"
        "char-nvidia-frontend"
        "char-nvidia-uvm"
      ];
      description = "Device classes a CUDA service needs (same list as nixpkgs' ollama unit).";
    };
  };

  config = lib.mkIf cfg.enable {
    # The driver, persistenced and CUDA are unfree.
    nixpkgs.config.allowUnfree = lib.mkDefault true;

    # "nvidia" in videoDrivers is what turns hardware.nvidia on; it does not
    # start an X server (services.xserver.enable stays false).
    services.xserver.videoDrivers = [ "nvidia" ];
    hardware.graphics.enable = lib.mkDefault true;
    hardware.nvidia = {
      open = lib.mkDefault true;
      package = lib.mkDefault config.boot.kernelPackages.nvidiaPackages.stable;
      nvidiaPersistenced = lib.mkDefault true;
      nvidiaSettings = lib.mkDefault false;
      powerManagement.enable = lib.mkDefault false;
    };

    # CDI specs (nvidia.com/gpu=all) for podman/docker containers.
    hardware.nvidia-container-toolkit.enable = lib.mkDefault true;

    systemd.services = lib.mkMerge [
      (lib.mkIf (limited != [ ]) {
        nvidia-power-limits = {
          description = "Apply NVIDIA GPU power limits";
          wantedBy = [ "multi-user.target" ];
          after = [ "nvidia-persistenced.service" ];
          wants = [ "nvidia-persistenced.service" ];
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            ExecStart = map (
              g: "${nvidiaSmi} -i ${toString g.index} -pl ${toString g.value.powerLimitWatts}"
            ) limited;
          };
        };
      })
      (lib.genAttrs cfg.services (_: {
        after = lib.optional (limited != [ ]) "nvidia-power-limits.service";
        environment.CUDA_DEVICE_ORDER = "PCI_BUS_ID";
        serviceConfig = {
          PrivateDevices = false;
          DeviceAllow = cfg.deviceAllow;
        };
      }))
    ];

    assertions = [
      {
        assertion = lib.versionAtLeast config.hardware.nvidia.package.version cfg.minDriverVersion;
        message = ''
          hydra.gpu.nvidia: driver ${config.hardware.nvidia.package.version} is older than ${cfg.minDriverVersion};
          RTX 50xx (Blackwell) needs >= 570. Use config.boot.kernelPackages.nvidiaPackages.stable (or .latest)
          for hardware.nvidia.package.
        '';
      }
      {
        assertion =
          lib.any (g: g.architecture == "blackwell") cfg.gpus -> config.hardware.nvidia.open == true;
        message = ''
          hydra.gpu.nvidia: ${
            lib.concatMapStringsSep ", " (g: g.name) (lib.filter (g: g.architecture == "blackwell") cfg.gpus)
          } (Blackwell) only work with the open kernel module; set hardware.nvidia.open = true.
        '';
      }
      {
        assertion = cfg.gpus != [ ];
        message = "hydra.gpu.nvidia.enable is set but hydra.gpu.nvidia.gpus is empty; list the cards in PCI bus order.";
      }
    ];
  };
}
