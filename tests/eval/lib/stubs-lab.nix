# Typed stand-ins for the nixpkgs options the lab modules set, beyond the
# shared list in stubs.nix (never redeclared here). Types follow the
# nixpkgs modules (26.05) named in each comment; defaults are nixpkgs'
# where they matter for the lab's logic. Only the options the lab touches
# are declared, so a typo in a lab module fails evaluation here.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  opt = type: default: mkOption { inherit type default; };
  bool = opt types.bool false;
  strs = opt (types.listOf types.str) [ ];
  port = default: opt types.port default;

  # nixos/modules/misc/nixpkgs.nix `configType`
  nixpkgsConfigType = lib.mkOptionType {
    name = "nixpkgs-config";
    description = "nixpkgs config";
    check = lib.isAttrs;
    merge = _: defs: lib.foldr (d: acc: lib.recursiveUpdate acc d.value) { } defs;
  };

  # nixos/modules/services/monitoring/prometheus/exporters.nix common options
  exporter =
    defaultPort: extra:
    types.submodule {
      options = {
        enable = bool;
        port = port defaultPort;
        listenAddress = opt types.str "0.0.0.0";
        openFirewall = bool;
        extraFlags = strs;
      }
      // extra;
    };

  iniAtom = types.nullOr (
    types.oneOf [
      types.bool
      types.int
      types.float
      types.str
    ]
  );
  yamlValue = (pkgs.formats.yaml { }).type;
in
{
  options = {
    # nixos/modules/tasks/network-interfaces.nix
    networking.hostName = opt (types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$") "nixos";
    networking.useDHCP = opt types.bool true;
    networking.interfaces = opt (types.attrsOf (
      types.submodule {
        options.ipv4.addresses = opt (types.listOf (
          types.submodule {
            options = {
              address = mkOption { type = types.str; };
              prefixLength = mkOption { type = types.addCheck types.int (n: n >= 0 && n <= 32); };
            };
          }
        )) [ ];
      }
    )) { };
    networking.defaultGateway = opt (types.nullOr (
      types.coercedTo types.str (address: { inherit address; }) (
        types.submodule {
          options = {
            address = mkOption { type = types.str; };
            interface = opt (types.nullOr types.str) null;
            metric = opt (types.nullOr types.int) null;
            source = opt (types.nullOr types.str) null;
          };
        }
      )
    )) null;
    networking.nameservers = opt (types.listOf types.str) [ ];
    # nixos/modules/services/networking/nftables.nix, firewall.nix
    networking.nftables.enable = bool;
    networking.firewall.extraInputRules = opt types.lines "";

    # nixos/modules/system/boot/kernel.nix, loader/*, stage-1.nix
    boot.kernelPackages = opt types.raw pkgs.linuxPackages;
    boot.initrd.availableKernelModules = strs;
    boot.loader.systemd-boot.enable = bool;
    boot.loader.efi.canTouchEfiVariables = bool;

    # nixos/modules/tasks/filesystems.nix (the sub-options the hosts use)
    fileSystems = opt (types.attrsOf (
      types.submodule {
        options = {
          device = opt (types.nullOr types.nonEmptyStr) null;
          fsType = opt types.nonEmptyStr "auto";
          options = opt (types.nonEmptyListOf types.nonEmptyStr) [ "defaults" ];
        };
      }
    )) { };

    # nixos/modules/hardware/*
    hardware.enableRedistributableFirmware = bool;
    hardware.cpu.amd.updateMicrocode = bool;
    hardware.cpu.intel.updateMicrocode = bool;
    hardware.graphics = {
      enable = bool;
      extraPackages = opt (types.listOf types.package) [ ];
    };
    # nixos/modules/hardware/video/nvidia.nix
    hardware.nvidia = {
      enabled = mkOption {
        type = types.bool;
        readOnly = true;
        # nixpkgs: NVIDIA support is on when "nvidia" is in
        # services.xserver.videoDrivers or the datacenter driver is enabled.
        default =
          lib.elem "nvidia" config.services.xserver.videoDrivers || config.hardware.nvidia.datacenter.enable;
      };
      package = mkOption {
        type = types.unspecified;
        default = config.boot.kernelPackages.nvidiaPackages.stable;
      };
      open = opt (types.nullOr types.bool) null;
      modesetting.enable = opt types.bool true;
      nvidiaPersistenced = bool;
      nvidiaSettings = opt types.bool true;
      powerManagement.enable = bool;
      datacenter.enable = bool;
    };
    # nixos/modules/services/hardware/nvidia-container-toolkit/default.nix
    hardware.nvidia-container-toolkit.enable = bool;
    # nixos/modules/services/x11/xserver.nix
    services.xserver.videoDrivers = opt (types.listOf types.str) [
      "modesetting"
      "fbdev"
    ];

    # nixos/modules/misc/nixpkgs.nix, version.nix
    nixpkgs.config = opt nixpkgsConfigType { };
    # set by consumers that build their own nixpkgs (and by the NixOS test
    # driver); the config section below has nixpkgs.nix's assertion on it
    nixpkgs.pkgs = mkOption { type = types.pkgs; };
    nixpkgs.hostPlatform = opt (types.either types.str types.attrs) "x86_64-linux";
    system.stateVersion = opt types.str "26.05";

    # nixos/modules/services/misc/ollama.nix (config section below)
    services.ollama = {
      enable = bool;
      package = opt types.package pkgs.ollama;
      user = opt (types.nullOr types.str) null;
      group = opt (types.nullOr types.str) config.services.ollama.user;
      home = opt types.str "/var/lib/ollama";
      models = opt types.str "${config.services.ollama.home}/models";
      host = opt types.str "127.0.0.1";
      port = port 11434;
      rocmOverrideGfx = opt (types.nullOr types.str) null;
      environmentVariables = opt (types.attrsOf types.str) { };
      loadModels = mkOption {
        type = types.listOf types.str;
        apply = builtins.filter (model: model != "");
        default = [ ];
      };
      syncModels = bool;
      openFirewall = bool;
    };

    # nixos/modules/services/misc/open-webui.nix
    services.open-webui = {
      enable = bool;
      host = opt types.str "127.0.0.1";
      port = port 8080;
      openFirewall = bool;
      environmentFile = opt (types.nullOr types.path) null;
      environment = opt (types.attrsOf types.str) {
        SCARF_NO_ANALYTICS = "True";
        DO_NOT_TRACK = "True";
        ANONYMIZED_TELEMETRY = "False";
      };
    };

    # nixos/modules/virtualisation/podman/default.nix, oci-containers.nix
    virtualisation.podman.enable = bool;
    virtualisation.oci-containers = {
      backend = opt (types.enum [
        "podman"
        "docker"
      ]) "podman";
      containers = opt (types.attrsOf (
        types.submodule {
          options = {
            image = mkOption { type = types.str; };
            cmd = strs;
            ports = strs;
            volumes = strs;
            devices = strs;
            extraOptions = strs;
            environment = opt (types.attrsOf types.str) { };
            environmentFiles = opt (types.listOf types.path) [ ];
          };
        }
      )) { };
    };

    # nixos/modules/services/databases/postgresql.nix
    services.postgresql = {
      enableTCPIP = bool;
      authentication = opt types.lines "";
      settings = mkOption {
        default = { };
        type = types.submodule {
          freeformType = types.attrsOf (
            types.oneOf [
              types.bool
              types.float
              types.int
              types.str
            ]
          );
          options.port = port 5432;
        };
      };
      extensions = opt (types.coercedTo (types.listOf types.path) (path: _ignorePg: path) (
        types.functionTo (types.listOf types.path)
      )) (_: [ ]);
    };

    # nixos/modules/services/monitoring/prometheus/{default,exporters}.nix
    services.prometheus = {
      enable = bool;
      port = port 9090;
      listenAddress = opt types.str "0.0.0.0";
      retentionTime = opt (types.nullOr types.str) null;
      globalConfig.scrape_interval = opt (types.nullOr types.str) null;
      ruleFiles = opt (types.listOf types.path) [ ];
      scrapeConfigs = opt (types.listOf (
        types.submodule {
          options = {
            job_name = mkOption { type = types.str; };
            metrics_path = opt (types.nullOr types.str) null;
            static_configs = opt (types.nullOr (
              types.listOf (
                types.submodule {
                  options = {
                    targets = mkOption { type = types.listOf types.str; };
                    labels = opt (types.attrsOf types.str) { };
                  };
                }
              )
            )) null;
          };
        }
      )) [ ];
      exporters = {
        node = opt (exporter 9100 { enabledCollectors = strs; }) { };
        nvidia-gpu = opt (exporter 9835 { }) { };
        postgres = opt (exporter 9187 {
          runAsLocalSuperUser = bool;
          dataSourceName = opt types.str "user=postgres database=postgres host=/run/postgresql sslmode=disable";
        }) { };
        redis = opt (exporter 9121 { }) { };
      };
    };

    # nixos/modules/services/monitoring/grafana.nix
    services.grafana = {
      enable = bool;
      settings = opt (types.attrsOf (types.attrsOf iniAtom)) { };
      provision = {
        enable = bool;
        datasources.settings = opt (types.nullOr (
          types.submodule {
            options.apiVersion = opt types.int 1;
            options.datasources = opt (types.listOf (
              types.submodule {
                freeformType = yamlValue;
                options = {
                  name = mkOption { type = types.str; };
                  type = mkOption { type = types.str; };
                  uid = opt (types.nullOr types.str) null;
                  url = opt types.str "";
                  jsonData = opt (types.nullOr types.attrs) null;
                };
              }
            )) [ ];
          }
        )) null;
        dashboards.settings = opt (types.nullOr (
          types.submodule {
            options.apiVersion = opt types.int 1;
            options.providers = opt (types.listOf (
              types.submodule {
                freeformType = yamlValue;
                options = {
                  name = opt types.str "default";
                  type = opt types.str "file";
                  options.path = mkOption { type = types.path; };
                };
              }
            )) [ ];
          }
        )) null;
      };
    };

    # nixos/modules/services/misc/jellyfin.nix (config section below)
    services.jellyfin = {
      enable = bool;
      package = opt types.package pkgs.jellyfin;
      user = opt types.str "jellyfin";
      group = opt types.str "jellyfin";
      dataDir = opt types.path "/var/lib/jellyfin";
      configDir = opt types.path "${config.services.jellyfin.dataDir}/config";
      cacheDir = opt types.path "/var/cache/jellyfin";
      logDir = opt types.path "${config.services.jellyfin.dataDir}/log";
      openFirewall = bool;
      forceEncodingConfig = bool;
      hardwareAcceleration = {
        enable = bool;
        type = opt (types.enum [
          "none"
          "amf"
          "qsv"
          "nvenc"
          "v4l2m2m"
          "vaapi"
          "rkmpp"
        ]) "none";
        device = opt (types.nullOr types.path) null;
      };
      transcoding = {
        enableHardwareEncoding = bool;
        hardwareDecodingCodecs = lib.genAttrs [
          "h264"
          "hevc"
          "hevc10bit"
          "hevcRExt10bit"
          "hevcRExt12bit"
          "mpeg2"
          "vc1"
          "vp8"
          "vp9"
          "av1"
        ] (_: bool);
        hardwareEncodingCodecs = {
          hevc = bool;
          av1 = bool;
        };
      };
    };
  };

  # What nixpkgs' modules define in their `config` sections (see
  # tests/eval/NIXPKGS-FACTS.md), so that our definitions merge with them,
  # or collide, as on a real system.
  config = lib.mkMerge [
    # nixos/modules/misc/nixpkgs.nix
    {
      assertions = [
        {
          assertion = options.nixpkgs.pkgs.isDefined -> config.nixpkgs.config == { };
          message = ''
            Your system configures nixpkgs with an externally created instance.
            `nixpkgs.config` options should be passed when creating the instance instead.
          '';
        }
      ];
    }
    # nixos/modules/services/misc/jellyfin.nix
    (lib.mkIf config.services.jellyfin.enable {
      assertions = [
        {
          assertion =
            config.services.jellyfin.hardwareAcceleration.enable
            -> config.services.jellyfin.hardwareAcceleration.device != null;
          message = "services.jellyfin.hardwareAcceleration.device cannot be null when hardware acceleration is enabled.";
        }
      ];
      systemd.services.jellyfin = {
        description = "Jellyfin Media Server";
        after = [ "network-online.target" ];
        wants = [ "network-online.target" ];
        wantedBy = [ "multi-user.target" ];
        # encoding.xml is written only with hardware acceleration: replaced on
        # every start with forceEncodingConfig (old one backed up), else only
        # when there is none yet.
        preStart = lib.mkIf config.services.jellyfin.hardwareAcceleration.enable (
          if config.services.jellyfin.forceEncodingConfig then
            ''
              encodingXmlBackup="$configDir/encoding.xml.backup-$(date -u +"%FT%H_%M_%SZ")"
            ''
          else
            ''
              echo "WARN: $encodingXml already exists and is different from the configured settings. transcoding options NOT applied." >&2
            ''
        );
        serviceConfig = {
          DeviceAllow = lib.mkIf config.services.jellyfin.hardwareAcceleration.enable [
            "${config.services.jellyfin.hardwareAcceleration.device} rw"
          ];
          PrivateDevices = lib.mkDefault false;
          User = config.services.jellyfin.user;
          Group = config.services.jellyfin.group;
        };
      };
    })
    # nixos/modules/services/misc/ollama.nix
    (lib.mkIf config.services.ollama.enable {
      systemd.services.ollama = {
        description = "Server for local large language models";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        environment = config.services.ollama.environmentVariables // {
          HOME = config.services.ollama.home;
          OLLAMA_MODELS = config.services.ollama.models;
          OLLAMA_HOST = "${config.services.ollama.host}:${toString config.services.ollama.port}";
        };
        serviceConfig = {
          Type = "exec";
          DynamicUser = true;
          ExecStart = "${lib.getExe config.services.ollama.package} serve";
          StateDirectory = [ "ollama" ];
          DeviceAllow = [
            "char-nvidiactl"
            "char-nvidia-caps"
            "char-nvidia-frontend"
            "char-nvidia-uvm"
            "char-drm"
            "char-fb"
            "char-kfd"
            "/dev/dxg"
          ];
          DevicePolicy = "closed";
          PrivateDevices = false;
          ProcSubset = "all";
          ProtectSystem = "strict";
          SupplementaryGroups = [ "render" ];
        };
      };
      systemd.services.ollama-model-loader =
        lib.mkIf (config.services.ollama.loadModels != [ ] || config.services.ollama.syncModels)
          {
            description = "Download ollama models in the background";
            wantedBy = [
              "multi-user.target"
              "ollama.service"
            ];
            after = [
              "ollama.service"
              "network-online.target"
            ];
            wants = [ "network-online.target" ];
            bindsTo = [ "ollama.service" ];
            script = "ollama pull ${lib.escapeShellArgs config.services.ollama.loadModels}";
          };
      networking.firewall = lib.mkIf config.services.ollama.openFirewall {
        allowedTCPPorts = [ config.services.ollama.port ];
      };
    })
  ];
}
