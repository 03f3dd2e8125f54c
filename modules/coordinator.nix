# services.hydra-coordinator: the hybrid LLM coordinator (coordinator/) as a
# hardened systemd service, optionally with a local PostgreSQL database and a
# local Redis instance.
#
# The package is not in nixpkgs. `package` defaults to `pkgs.hydra-coordinator`
# when the flake's `overlays.default` (or an overlay of your own) provides it,
# and otherwise to ../pkgs/hydra-coordinator/package.nix built with the
# `pkgs` of the system that imports this module. See docs/nixos.md.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.services.hydra-coordinator;

  settingsFormat = pkgs.formats.json { };

  # Names shared by the unit, the dynamic user, the PostgreSQL role and
  # database, the Redis instance and the state directory.
  name = "hydra-coordinator";

  localDatabaseUrl = "postgresql:///${name}?host=/run/postgresql";
  redisServer = config.services.redis.servers.${name};
  # The instance exists only with redis.createLocally, but the assertion
  # messages name this URL: fall back to nixpkgs' default socket path
  # (nixos/modules/services/databases/redis.nix) so they always evaluate.
  localRedisUrl = "unix://${
    config.services.redis.servers.${name}.unixSocket or "/run/redis-${name}/redis.sock"
  }";

  isLoopback =
    address:
    lib.elem address [
      "localhost"
      "::1"
      "[::1]"
    ]
    || lib.hasPrefix "127." address;

  # Every place where the coordinator's config names a secret file.
  secretRefs =
    lib.concatMap (
      backend:
      lib.optional (backend.api_key_file != null) {
        option = "services.hydra-coordinator.settings.backends (backend \"${backend.name}\").api_key_file";
        value = backend.api_key_file;
      }
    ) cfg.settings.backends
    ++ map (value: {
      option = "services.hydra-coordinator.settings.auth.api_key_files";
      inherit value;
    }) cfg.settings.auth.api_key_files
    ++ map (value: {
      option = "services.hydra-coordinator.settings.auth.admin_key_files";
      inherit value;
    }) adminKeyFiles;

  # Admin keys (API keys that also see every key's data), freeform: names of
  # credentials, as auth.api_key_files.
  adminKeyFiles = cfg.settings.auth.admin_key_files or [ ];

  # On SIGTERM the coordinator gives open requests limits.shutdown_timeout_s
  # (its default: 20), then writes its telemetry (at most 5 s) and closes its
  # stores: systemd waits that long and a margin before it kills.
  shutdownTimeout = cfg.settings.limits.shutdown_timeout_s or 20;

  # A bare name (no slash) is a credential, resolved by the coordinator against
  # $CREDENTIALS_DIRECTORY.
  isCredentialName = value: !(lib.hasInfix "/" value);

  missingCredentials = lib.filter (
    ref: isCredentialName ref.value && !(cfg.credentials ? ${ref.value})
  ) secretRefs;
  storeSecrets = lib.filter (ref: lib.hasPrefix "${builtins.storeDir}/" ref.value) secretRefs;
  absoluteSecrets = lib.filter (
    ref: lib.hasPrefix "/" ref.value && !(lib.hasPrefix "${builtins.storeDir}/" ref.value)
  ) secretRefs;

  badCredentialNames = lib.filter (
    credential: builtins.match "[A-Za-z0-9_.@-]+" credential == null
  ) (lib.attrNames cfg.credentials);

  showRef = ref: "${ref.option} = \"${ref.value}\"";

  configFile = settingsFormat.generate "${name}.json" cfg.settings;

  # Validated at build time. `--no-secrets` skips reading the secret files,
  # which exist only on the running system (as credentials).
  checkedConfigFile =
    if cfg.checkConfig then
      pkgs.runCommand "${name}-checked.json"
        {
          preferLocalBuild = true;
        }
        ''
          export HOME="$TMPDIR"
          ${lib.getExe cfg.package} check-config --no-secrets ${configFile} > /dev/null
          cp ${configFile} "$out"
        ''
    else
      configFile;
in
{
  options.services.hydra-coordinator = {
    enable = lib.mkEnableOption "the Hydra hybrid LLM coordinator, an OpenAI-compatible router between local and cloud backends";

    package = lib.mkPackageOption pkgs "hydra-coordinator" {
      extraDescription = ''
        When `pkgs` has no `hydra-coordinator` (the flake's `overlays.default`
        is not applied), the module builds the package from the flake's source
        with your `pkgs`.
      '';
    };

    settings = lib.mkOption {
      description = ''
        Configuration of the coordinator, written to a JSON file and passed with
        `--config`. Free-form (RFC 42): every key of the coordinator's config is
        accepted; see the coordinator's documentation. `listen`, and with
        `database.createLocally`/`redis.createLocally`/`qdrant.url` the
        `database.url`, `redis.url` and `qdrant.url` keys, are set by the
        module.

        Secret files are never given by value: `api_key_file`,
        `auth.api_key_files` and `auth.admin_key_files` hold the *name* of a
        credential declared in
        {option}`services.hydra-coordinator.credentials`.
      '';
      default = { };
      example = lib.literalExpression ''
        {
          backends = [
            { name = "ollama"; kind = "local"; base_url = "http://127.0.0.1:11434/v1"; }
            {
              name = "openai";
              kind = "cloud";
              base_url = "https://api.openai.com/v1";
              api_key_file = "openai-key";
              models = [ "gpt-4.1-mini" ];
            }
          ];
          routing.threshold = 0.7;
          log.level = "info";
        }
      '';
      type = lib.types.submodule {
        freeformType = settingsFormat.type;
        options = {
          backends = lib.mkOption {
            description = "Upstream OpenAI-compatible servers the coordinator routes between.";
            default = [ ];
            example = lib.literalExpression ''
              [ { name = "ollama"; kind = "local"; base_url = "http://127.0.0.1:11434/v1"; } ]
            '';
            type = lib.types.listOf (
              lib.types.submodule {
                freeformType = settingsFormat.type;
                options = {
                  name = lib.mkOption {
                    type = lib.types.str;
                    description = "Name of the backend (metrics label, `x-hydra-backend` header).";
                    example = "ollama";
                  };
                  kind = lib.mkOption {
                    type = lib.types.str;
                    description = "Kind of the backend, e.g. `local` (own GPUs) or `cloud`.";
                    example = "local";
                  };
                  base_url = lib.mkOption {
                    type = lib.types.str;
                    description = "Base URL of the OpenAI-compatible API, including `/v1`.";
                    example = "http://127.0.0.1:11434/v1";
                  };
                  api_key_file = lib.mkOption {
                    type = lib.types.nullOr lib.types.str;
                    default = null;
                    description = ''
                      Name of the credential (in
                      {option}`services.hydra-coordinator.credentials`) holding
                      the backend's API key; `null` for none.
                    '';
                    example = "openai-key";
                  };
                };
              }
            );
          };

          auth.api_key_files = lib.mkOption {
            type = lib.types.listOf lib.types.str;
            default = [ ];
            description = ''
              Names of credentials (in
              {option}`services.hydra-coordinator.credentials`) holding the API
              keys clients must present. Each file holds one key per line; blank
              lines and lines starting with `#` are ignored (a file with no key, or
              whitespace inside a key, stops the service at start, naming the file).
              Empty means no authentication, which is allowed only on a loopback
              {option}`services.hydra-coordinator.listen.address`.
            '';
            example = [ "client-keys" ];
          };
        };
      };
    };

    configFile = lib.mkOption {
      type = lib.types.path;
      readOnly = true;
      default = checkedConfigFile;
      defaultText = lib.literalMD "the generated JSON file, checked with `hydra-coordinator check-config` when `checkConfig` is on";
      description = ''
        The generated config file the service runs with. Use it for the CLI on
        the host, e.g. `hydra-coordinator route --config <file> "question"`.
      '';
    };

    checkConfig = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = ''
        Whether to validate the generated config at build time with
        `hydra-coordinator check-config --no-secrets`. Turn off when the package
        cannot run on the build machine (cross compilation).
      '';
    };

    listen = {
      address = lib.mkOption {
        type = lib.types.str;
        default = "127.0.0.1";
        description = ''
          Address the HTTP API listens on. Anything but a loopback address needs
          client API keys in {option}`services.hydra-coordinator.settings.auth.api_key_files`.
        '';
        example = "0.0.0.0";
      };

      port = lib.mkOption {
        type = lib.types.port;
        default = 8092;
        description = "TCP port the HTTP API listens on.";
      };
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Whether to open {option}`services.hydra-coordinator.listen.port` in the firewall.";
    };

    credentials = lib.mkOption {
      type = lib.types.attrsOf (
        lib.types.pathWith {
          inStore = false;
          absolute = true;
        }
      );
      default = { };
      description = ''
        Secret files passed to the service with systemd's `LoadCredential`, as
        credential name -> path of the file on the target machine (a string,
        e.g. from sops-nix or agenix: the file never enters the Nix store and
        need not be readable by the service's dynamic user). The settings refer
        to a credential by its name, e.g. `api_key_file = "openai-key"`; the
        coordinator reads it from `$CREDENTIALS_DIRECTORY`.
      '';
      example = lib.literalExpression ''
        {
          openai-key = config.sops.secrets.openai.path;
          client-keys = "/run/agenix/hydra-client-keys";
        }
      '';
    };

    environmentFile = lib.mkOption {
      type = lib.types.nullOr (
        lib.types.pathWith {
          inStore = false;
          absolute = true;
        }
      );
      default = null;
      description = ''
        File with `NAME=value` lines added to the service's environment
        (systemd `EnvironmentFile`), e.g. for settings the coordinator reads
        from the environment. Prefer {option}`services.hydra-coordinator.credentials`
        for secrets.
      '';
      example = "/run/secrets/hydra-coordinator.env";
    };

    database.createLocally = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Whether to create a local PostgreSQL database and role, both named
        `hydra-coordinator`, reached over the unix socket with peer
        authentication, and to point `settings.database.url` at it.
      '';
    };

    redis.createLocally = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = ''
        Whether to run a local Redis instance
        (`services.redis.servers.hydra-coordinator`, unix socket only) and to
        point `settings.redis.url` at it.
      '';
    };

    qdrant.url = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = ''
        URL of the Qdrant server, written to `settings.qdrant.url`; `null`
        leaves the setting alone. When `services.qdrant` runs on the same
        machine the unit is ordered after it.
      '';
      example = "http://127.0.0.1:6333";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion =
          isLoopback cfg.listen.address
          || cfg.settings.auth.api_key_files != [ ]
          || adminKeyFiles != [ ];
        message = ''
          services.hydra-coordinator.listen.address = "${cfg.listen.address}" is not a loopback
          address, but services.hydra-coordinator.settings.auth.api_key_files is empty: anyone on
          the network could use the coordinator (and its cloud keys). Add a credential with the
          client keys, e.g.
            services.hydra-coordinator.credentials.client-keys = "/run/secrets/hydra-client-keys";
            services.hydra-coordinator.settings.auth.api_key_files = [ "client-keys" ];
          or listen on 127.0.0.1.
        '';
      }
      {
        assertion = missingCredentials == [ ];
        message = ''
          services.hydra-coordinator.settings refers to credentials that are not declared in
          services.hydra-coordinator.credentials:
            ${lib.concatMapStringsSep "\n  " showRef missingCredentials}
          Declare each, e.g.
            services.hydra-coordinator.credentials.${
              (lib.head (missingCredentials ++ [ { value = "NAME"; } ])).value
            } = "/run/secrets/...";
        '';
      }
      {
        assertion = storeSecrets == [ ];
        message = ''
          services.hydra-coordinator.settings names secret files in the Nix store, which is
          world-readable:
            ${lib.concatMapStringsSep "\n  " showRef storeSecrets}
          Keep the secret outside the store, declare it in services.hydra-coordinator.credentials
          and refer to it by the credential name.
        '';
      }
      {
        assertion = badCredentialNames == [ ];
        message = ''
          services.hydra-coordinator.credentials: invalid credential name(s)
          ${lib.concatStringsSep ", " badCredentialNames}; use letters, digits, "_", ".", "@" and "-" only.
        '';
      }
      {
        assertion =
          cfg.database.createLocally -> (cfg.settings.database.url or null) == localDatabaseUrl;
        message = ''
          services.hydra-coordinator.database.createLocally is enabled, but
          services.hydra-coordinator.settings.database.url is set to
          "${toString (cfg.settings.database.url or "")}" instead of the local database
          "${localDatabaseUrl}". Remove the setting, or disable database.createLocally to use
          another server.
        '';
      }
      {
        assertion = cfg.redis.createLocally -> (cfg.settings.redis.url or null) == localRedisUrl;
        message = ''
          services.hydra-coordinator.redis.createLocally is enabled, but
          services.hydra-coordinator.settings.redis.url is set to
          "${toString (cfg.settings.redis.url or "")}" instead of the local instance
          "${localRedisUrl}". Remove the setting, or disable redis.createLocally to use another
          server.
        '';
      }
    ];

    warnings = map (
      ref:
      "${showRef ref}: an absolute path is read directly by the service's dynamic user, which usually cannot; declare it in services.hydra-coordinator.credentials and use the credential name instead."
    ) absoluteSecrets;

    services.hydra-coordinator = {
      # mkDefault: an overlay that provides pkgs.hydra-coordinator, or a
      # definition by the user, wins.
      package = lib.mkIf (!(pkgs ? hydra-coordinator)) (
        lib.mkDefault (pkgs.callPackage ../pkgs/hydra-coordinator/package.nix { })
      );

      settings = lib.mkMerge [
        {
          listen = {
            host = cfg.listen.address;
            inherit (cfg.listen) port;
          };
        }
        (lib.mkIf cfg.database.createLocally { database.url = lib.mkDefault localDatabaseUrl; })
        (lib.mkIf cfg.redis.createLocally { redis.url = lib.mkDefault localRedisUrl; })
        (lib.mkIf (cfg.qdrant.url != null) { qdrant.url = lib.mkDefault cfg.qdrant.url; })
      ];
    };

    services.postgresql = lib.mkIf cfg.database.createLocally {
      enable = true;
      ensureDatabases = [ name ];
      ensureUsers = [
        {
          inherit name;
          ensureDBOwnership = true;
        }
      ];
    };

    # A named instance listens on no TCP port by default (port = 0): unix
    # socket only, mode 660, group redis-hydra-coordinator.
    services.redis.servers.${name} = lib.mkIf cfg.redis.createLocally { enable = true; };

    networking.firewall.allowedTCPPorts = lib.mkIf cfg.openFirewall [ cfg.listen.port ];

    environment.systemPackages = [ cfg.package ];

    systemd.services.${name} = {
      description = "Hydra hybrid LLM coordinator";
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      # postgresql.target is reached once postgresql-setup.service has created
      # the database and role (ensureDatabases/ensureUsers), not just when the
      # server runs.
      after = [
        "network-online.target"
      ]
      ++ lib.optional cfg.database.createLocally "postgresql.target"
      ++ lib.optional cfg.redis.createLocally "redis-${name}.service"
      ++ lib.optional config.services.qdrant.enable "qdrant.service";
      requires =
        lib.optional cfg.database.createLocally "postgresql.target"
        ++ lib.optional cfg.redis.createLocally "redis-${name}.service";

      environment.HYDRA_COORDINATOR_CONFIG = "${cfg.configFile}";

      serviceConfig = {
        ExecStart = "${lib.getExe cfg.package} serve --config ${cfg.configFile}";
        Restart = "on-failure";
        RestartSec = "5s";

        # A fixed name for the dynamic user: PostgreSQL's peer authentication
        # maps the connecting uid to this name, which is also the role.
        DynamicUser = true;
        User = name;
        Group = name;
        SupplementaryGroups = lib.optional cfg.redis.createLocally redisServer.group;
        StateDirectory = name;
        StateDirectoryMode = "0700";
        WorkingDirectory = "%S/${name}";
        UMask = "0077";

        LoadCredential = lib.mapAttrsToList (credential: path: "${credential}:${path}") cfg.credentials;

        # Client connections are kept under half the descriptor limit
        # (limits.max_connections, 1024 by default); systemd's default soft
        # limit of 1024 would leave room for about 450.
        LimitNOFILE = 65536;
        TimeoutStopSec = builtins.ceil shutdownTimeout + 30;
        EnvironmentFile = lib.optional (cfg.environmentFile != null) cfg.environmentFile;

        # Hardening, after nixpkgs' ollama and qdrant modules.
        CapabilityBoundingSet = [ "" ];
        AmbientCapabilities = [ "" ];
        NoNewPrivileges = true;
        DevicePolicy = "closed";
        PrivateDevices = true;
        PrivateTmp = true;
        PrivateIPC = true;
        # PrivateUsers maps only the unit's own user and group into its user
        # namespace. Peer authentication is unaffected (PostgreSQL sees the
        # real uid of the socket peer), but the local Redis socket is reached
        # through the supplementary group redis-hydra-coordinator, which is not
        # mapped; to be safe the user namespace is off in that case.
        PrivateUsers = !cfg.redis.createLocally;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectClock = true;
        ProtectControlGroups = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectProc = "invisible";
        # Not ProcSubset=pid: that hides /proc/stat, and prometheus_client's
        # process collector needs its boot time (btime) for any process_*
        # metric (resident memory, CPU, open files) to appear on /metrics.
        ProcSubset = "all";
        LockPersonality = true;
        # CPython, pydantic-core, orjson, uvloop and psycopg's C module do not
        # generate code; libffi uses static trampolines.
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        # Relaxation: the coordinator is a network service calling local and
        # cloud upstreams, so PrivateNetwork and IPAddressDeny stay off; unix
        # sockets reach PostgreSQL and Redis.
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        SystemCallErrorNumber = "EPERM";
      };
    };
  };
}
