# Headless NVIDIA setup for CUDA servers that mix Blackwell (RTX 50xx) and
# Ada (RTX 40xx) cards: open kernel module (Blackwell only works with it),
# a >= 570 driver branch, the persistence daemon, no X server, per-GPU power
# limits, CDI for containers, and GPU device access for chosen services.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hydra.gpu.nvidia;
  inherit (lib) mkOption types;
  nvidiaSmi = "${lib.getBin config.hardware.nvidia.package}/bin/nvidia-smi";

  # CUDA compute capability of the GeForce/RTX cards of each generation
  # (NVIDIA's CUDA GPU list): RTX 20xx 7.5, RTX 30xx 8.6, RTX 40xx 8.9,
  # H100 9.0, RTX 50xx 12.0. Datacenter cards of a generation differ (A100
  # 8.0, B200 10.0): set `cudaCapability` for those.
  capabilityOf = {
    turing = "7.5";
    ampere = "8.6";
    ada = "8.9";
    hopper = "9.0";
    blackwell = "12.0";
    other = null;
  };

  gpuType = types.submodule (
    { config, ... }:
    {
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
      cudaCapability = mkOption {
        type = types.nullOr (types.strMatching "[0-9]+\\.[0-9]+[af]?");
        default = capabilityOf.${config.architecture};
        defaultText = lib.literalMD ''
          from `architecture`, for GeForce/RTX cards: `turing` 7.5, `ampere` 8.6, `ada` 8.9,
          `hopper` 9.0, `blackwell` 12.0 (RTX 50xx); `null` for `other`
        '';
        example = "8.0";
        description = ''
          CUDA compute capability of the card (`nvidia-smi --query-gpu=compute_cap --format=csv`):
          what CUDA code is built for (`hydra.gpu.nvidia.cudaCapabilities`).
        '';
      };
    };
    }
  );

  builtCapabilities =
    let
      c = pkgs.config.cudaCapabilities or [ ];
    in
    if lib.isList c then c else [ ];
  missingCapabilities = lib.subtractLists builtCapabilities cfg.cudaCapabilities;

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

    cudaCapabilities = mkOption {
      type = types.listOf types.str;
      readOnly = true;
      default = lib.unique (lib.filter (c: c != null) (map (g: g.cudaCapability) cfg.gpus));
      defaultText = lib.literalMD "the `cudaCapability` of every card in `gpus`";
      description = ''
        The CUDA capabilities of this host's cards, for
        `nixpkgs.config.cudaCapabilities` (set in the host's configuration:
        reusable modules do not set `nixpkgs.config`). An assertion checks that
        the nixpkgs in use builds CUDA code for each of them.
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

  # The driver, persistenced and CUDA are unfree: the host allows them in
  # nixpkgs.config (hosts/hydra-ai, hosts/hydra-compute), not this module,
  # which may be used with a nixpkgs passed in from outside (nixpkgs.pkgs).
  config = lib.mkIf cfg.enable {
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
        # [ ] is nixpkgs' "every capability the CUDA release supports".
        assertion = builtCapabilities == [ ] || missingCapabilities == [ ];
        message = ''
          hydra.gpu.nvidia: nixpkgs.config.cudaCapabilities = [ ${lib.concatMapStringsSep " " (c: ''"${c}"'') builtCapabilities} ]
          builds no CUDA code for ${lib.concatStringsSep ", " missingCapabilities}, which the cards in hydra.gpu.nvidia.gpus
          need ("no kernel image is available for execution on the device"). Set, in the host's configuration
          (or in the nixpkgs you pass with nixpkgs.pkgs):
            nixpkgs.config.cudaCapabilities = [ ${lib.concatMapStringsSep " " (c: ''"${c}"'') cfg.cudaCapabilities} ];
        '';
      }
      {
        assertion = cfg.gpus != [ ];
        message = "hydra.gpu.nvidia.enable is set but hydra.gpu.nvidia.gpus is empty; list the cards in PCI bus order.";
      }
    ];
  };
}
