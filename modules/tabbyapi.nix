# hydra.tabbyapi: TabbyAPI (exllamav2/exllamav3, OpenAI-compatible) as a
# hardened systemd service, `hydra-tabbyapi.service`.
#
# nixpkgs packages `tabbyapi`, and newer nixpkgs also has a
# `services.tabbyapi` module (nixos/modules/services/web-apps/tabbyapi.nix,
# unit `tabbyapi`). So that this module works whether or not the nixpkgs in
# use has that one, its options live under `hydra.tabbyapi` and its unit,
# state and cache directories are called `hydra-tabbyapi`: nothing can be
# "already declared" or define the same unit twice. An assertion refuses
# running both.
#
# TabbyAPI reads `config.yml` and `api_tokens.yml` from its working
# directory (common/tabby_config.py, common/auth.py upstream). The unit runs
# in its state directory; ExecStartPre copies the generated config.yml there
# and writes api_tokens.yml from systemd credentials, so the key never
# enters the Nix store.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hydra.tabbyapi;
  settingsFormat = pkgs.formats.yaml { };
  configFile = settingsFormat.generate "tabbyapi-config.yml" cfg.settings;
  name = "hydra-tabbyapi";
  stateDir = "/var/lib/${name}";

  secretFile = lib.types.nullOr (
    lib.types.pathWith {
      inStore = false;
      absolute = true;
    }
  );

  # What TabbyAPI's config model accepts for model.cache_mode
  # (common/config_models.py: CACHE_TYPE = Literal["FP16", "Q8", "Q6", "Q4"]
  # or r"^[2-8]\s*,\s*[2-8]$"); anything else stops it at start.
  cacheModeType = lib.types.strMatching "FP16|Q8|Q6|Q4|[2-8][[:space:]]*,[[:space:]]*[2-8]";

  nixpkgsTabbyEnabled =
    lib.hasAttrByPath [ "services" "tabbyapi" "enable" ] options && config.services.tabbyapi.enable;

  # Keys go into YAML unquoted-safe only: refuse anything else instead of
  # escaping it.
  prepare = pkgs.writeShellScript "${name}-prepare" ''
    set -eu
    umask 077
    cp --no-preserve=mode ${configFile} config.yml
    key_of() {
      local file="$CREDENTIALS_DIRECTORY/$1" key
      key=$(tr -d '\n\r' < "$file")
      case "$key" in
        "" | *[!A-Za-z0-9._~+/=-]*)
          echo "${name}: credential $1 is empty or has characters other than A-Za-z0-9._~+/=-" >&2
          exit 1 ;;
      esac
      printf '%s' "$key"
    }
    if [ -n "''${CREDENTIALS_DIRECTORY:-}" ] && [ -e "$CREDENTIALS_DIRECTORY/api-key" ]; then
      api=$(key_of api-key)
      if [ -e "$CREDENTIALS_DIRECTORY/admin-key" ]; then
        admin=$(key_of admin-key)
      else
        # No admin key configured: a random one nobody knows disables admin calls.
        admin=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
      fi
      printf 'api_key: %s\nadmin_key: %s\n' "$api" "$admin" > api_tokens.yml.tmp
      mv api_tokens.yml.tmp api_tokens.yml
    fi
  '';
in
{
  options.hydra.tabbyapi = {
    enable = lib.mkEnableOption "TabbyAPI, an OpenAI-compatible server for exllamav2/exllamav3 models (unit `hydra-tabbyapi`)";

    package = lib.mkPackageOption pkgs [ "pkgsCuda" "tabbyapi" ] {
      extraDescription = ''
        TabbyAPI only runs on CUDA: the default is nixpkgs' `tabbyapi` built
        with CUDA (`pkgsCuda`, your nixpkgs config with `cudaSupport = true`,
        so only TabbyAPI's own stack is built with CUDA), for the
        capabilities in `nixpkgs.config.cudaCapabilities`.
      '';
    };

    host = lib.mkOption {
      type = lib.types.str;
      default = "127.0.0.1";
      example = "0.0.0.0";
      description = "Address TabbyAPI listens on (`network.host`).";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 5000;
      description = "Port TabbyAPI listens on (`network.port`).";
    };

    modelDir = lib.mkOption {
      type = lib.types.str;
      default = "${stateDir}/models";
      description = ''
        Directory holding the model folders (`model.model_dir`); put
        exl2/exl3 model directories here, named as in `model.model_name`.
      '';
    };

    apiKeyFile = lib.mkOption {
      type = secretFile;
      default = null;
      example = "/run/secrets/tabbyapi-api-key";
      description = ''
        File (an absolute path outside the Nix store) with the API key
        clients must send. Passed with LoadCredential and written to
        api_tokens.yml at start. Null: TabbyAPI generates keys itself on
        first start (printed to the journal).
      '';
    };

    adminKeyFile = lib.mkOption {
      type = secretFile;
      default = null;
      description = ''
        File (an absolute path outside the Nix store) with the admin key
        (model load/unload over the API). Null: a random, unknown one.
      '';
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open `port` to every network (the lab modules restrict it to the LAN instead).";
    };

    settings = lib.mkOption {
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options.model.cache_mode = lib.mkOption {
          type = cacheModeType;
          default = "FP16";
          example = "8,8";
          description = ''
            KV cache quantisation (`model.cache_mode`): `FP16`, `Q8`, `Q6`,
            `Q4` for exl2 models; for exl3 models the pair `"k_bits,v_bits"`
            with bits from 2 to 8, e.g. `"8,8"` (exl3 also maps `Q8` to
            `8,8`, `Q6` to `6,6`, `Q4` to `4,4`).
          '';
        };
      };
      default = { };
      example = lib.literalExpression ''
        {
          model = {
            model_name = "Qwen3-32B-exl3";
            max_seq_len = 32768;
            cache_mode = "8,8";
            gpu_split_auto = false;
            gpu_split = [ 30 22 ];
          };
        }
      '';
      description = ''
        TabbyAPI's config.yml (see config_sample.yml upstream: `network`,
        `logging`, `model`, `draft_model`, `sampling`, `lora`,
        `embeddings`, `developer`). `network.host`, `network.port` and
        `model.model_dir` follow the options above.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    hydra.tabbyapi.settings = {
      network = {
        host = lib.mkDefault cfg.host;
        port = lib.mkDefault cfg.port;
        disable_auth = lib.mkDefault false;
      };
      model.model_dir = lib.mkDefault cfg.modelDir;
      logging = {
        log_prompt = lib.mkDefault false;
        log_requests = lib.mkDefault false;
      };
    };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.port ];

    systemd.services.${name} = {
      description = "TabbyAPI LLM server";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment = {
        HOME = stateDir;
        HF_HOME = "${stateDir}/huggingface";
        TRITON_CACHE_DIR = "/var/cache/${name}/triton";
        CUDA_CACHE_PATH = "/var/cache/${name}/cuda";
      };
      serviceConfig = {
        ExecStartPre = [ prepare ];
        ExecStart = lib.getExe cfg.package;
        WorkingDirectory = stateDir;
        LoadCredential =
          lib.optional (cfg.apiKeyFile != null) "api-key:${cfg.apiKeyFile}"
          ++ lib.optional (cfg.adminKeyFile != null) "admin-key:${cfg.adminKeyFile}";
        Restart = "on-failure";
        RestartSec = 5;
        TimeoutStartSec = "15min"; # large models take a while to load

        DynamicUser = true;
        User = name;
        Group = name;
        StateDirectory = name;
        CacheDirectory = name;
        UMask = "0077";

        # GPU access (like nixpkgs' ollama unit)
        PrivateDevices = false;
        DevicePolicy = "closed";
        DeviceAllow = [
          "char-nvidiactl"
          "char-nvidia-caps"
          "char-nvidia-frontend"
          "char-nvidia-uvm"
        ];

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateUsers = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = [ "" ];
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
          "AF_NETLINK" # NVML/torch query interfaces
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        # CUDA/Triton JIT-compile kernels into writable+executable memory.
        MemoryDenyWriteExecute = false;
        RemoveIPC = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
      };
    };

    assertions = [
      {
        assertion = config.hardware.nvidia.enabled;
        message = ''
          hydra.tabbyapi needs the NVIDIA driver: TabbyAPI (exllamav2/exllamav3) only runs on CUDA.
          Enable hydra.gpu.nvidia.enable (or add "nvidia" to services.xserver.videoDrivers), or use
          hydra.lab.fakeGpuServers for a GPU-less test setup.
        '';
      }
      {
        assertion = cfg.package.passthru.cudaSupport or true;
        message = ''
          hydra.tabbyapi.package (${cfg.package.name or "tabbyapi"}) is built without CUDA, which TabbyAPI
          needs. Use the default, pkgs.pkgsCuda.tabbyapi, or a tabbyapi from a nixpkgs with cudaSupport.
        '';
      }
      {
        assertion = !nixpkgsTabbyEnabled;
        message = ''
          Both hydra.tabbyapi and nixpkgs' services.tabbyapi are enabled: two TabbyAPI servers would
          compete for the same GPUs (and, with the defaults, port 5000). Keep one: set
          services.tabbyapi.enable = false, or hydra.tabbyapi.enable = false (hydra.roles.ai turns
          hydra.tabbyapi on).
        '';
      }
      {
        assertion =
          (cfg.settings.network.disable_auth or false)
          -> lib.elem cfg.settings.network.host [
            "127.0.0.1"
            "::1"
            "localhost"
          ];
        message = ''
          hydra.tabbyapi.settings.network.disable_auth = true while listening on
          ${cfg.settings.network.host}: anyone who can reach the port could use the GPUs.
          Keep auth on (hydra.tabbyapi.apiKeyFile) or listen on 127.0.0.1.
        '';
      }
      {
        assertion =
          let
            m = cfg.settings.model or { };
          in
          (m.gpu_split_auto or true) || (m.gpu_split or [ ]) != [ ] || (m.tensor_parallel or false);
        message = ''
          hydra.tabbyapi.settings.model.gpu_split_auto = false needs model.gpu_split
          (GB per GPU, e.g. [ 30 22 ] for an RTX 5090 + RTX 4090).
        '';
      }
    ];
  };
}
