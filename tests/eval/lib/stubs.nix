# Typed stand-ins for the NixOS options our modules write, so that
# `lib.evalModules` can evaluate a module with nixpkgs' lib alone (no nixpkgs
# package set, no NixOS module tree). Each option is declared with the type
# and default nixpkgs gives it (nixos/modules/... named beside it), so a wrong
# type or a misspelt attribute fails here as it would on a real system.
#
# Declared here (owned by this file; other stub files must not redeclare them):
#   assertions, warnings
#   systemd.services.<name>.{enable, description, wantedBy, requiredBy, wants,
#     requires, after, before, bindsTo, partOf, upholds, conflicts, environment,
#     path, script, preStart, postStart, serviceConfig, unitConfig, startAt,
#     restartTriggers, reloadTriggers, restartIfChanged, stopIfChanged}
#   systemd.targets.<name>.{description, wantedBy, requiredBy, wants,
#     requires, after, before, partOf}
#   systemd.tmpfiles.rules
#   users.users.<name>.{name, isSystemUser, isNormalUser, group, extraGroups,
#     description, home, createHome, uid, shell}
#   users.groups.<name>.{name, gid, members}
#   networking.firewall.{enable, allowedTCPPorts}
#   services.postgresql.{enable, package, ensureDatabases, ensureUsers} and
#     its units (postgresql, postgresql-setup, postgresql.target)
#   services.redis.servers.<name>.{enable, port, bind, unixSocket,
#     unixSocketPerm, user, group, settings, openFirewall, requirePassFile,
#     save, appendOnly, databases, maxclients, logLevel, extraParams} and one
#     unit redis-<name> per enabled server
#   services.qdrant.{enable, package, webUIPackage, settings} and what its
#     `config` section defines (the settings mkDefaults, the qdrant unit)
#   environment.systemPackages
#   nixpkgs.overlays
#
# Options only the lab modules need live in stubs-lab.nix, imported next to
# this file by the tests that need them.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption types;

  # nixos/lib/systemd-lib.nix: unitNameType
  unitName = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  unitList = mkOption {
    type = types.listOf unitName;
    default = [ ];
  };

  # nixos/lib/systemd-unit-options.nix: unitOption, "systemd option". Lists
  # concatenate; scalars must agree.
  unitOption = types.mkOptionType {
    name = "systemd option";
    check =
      value:
      lib.isList value
      || lib.isBool value
      || lib.isInt value
      || lib.isFloat value
      || lib.isStringLike value;
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (def: lib.isList def.value) defs' then
        lib.concatMap (def: lib.toList def.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  # nixos/modules/misc/nixpkgs.nix: overlayType
  overlay = types.mkOptionType {
    name = "nixpkgs-overlay";
    description = "nixpkgs overlay";
    check = lib.isFunction;
    merge = lib.mergeOneOption;
  };

  # nixos/modules/config/users-groups.nix: passwdEntry
  passwdEntry =
    type:
    types.addCheck type (value: !(lib.hasInfix ":" value || lib.hasInfix "\n" value))
    // {
      description = "${type.description}, not containing newlines or colons";
    };

  serviceModule = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      description = mkOption {
        type = types.singleLineStr;
        default = "";
      };
      wantedBy = unitList;
      requiredBy = unitList;
      upholds = unitList;
      wants = unitList;
      requires = unitList;
      after = unitList;
      before = unitList;
      bindsTo = unitList;
      partOf = unitList;
      conflicts = unitList;
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      preStart = mkOption {
        type = types.lines;
        default = "";
      };
      postStart = mkOption {
        type = types.lines;
        default = "";
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      startAt = mkOption {
        type = types.either types.str (types.listOf types.str);
        default = [ ];
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      reloadTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
    };
  };

  userModule =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = passwdEntry types.str;
          default = name;
        };
        isSystemUser = mkOption {
          type = types.bool;
          default = false;
        };
        isNormalUser = mkOption {
          type = types.bool;
          default = false;
        };
        group = mkOption {
          type = types.str;
          default = "";
        };
        extraGroups = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        description = mkOption {
          type = passwdEntry types.str;
          default = "";
        };
        home = mkOption {
          type = passwdEntry types.path;
          default = "/var/empty";
        };
        createHome = mkOption {
          type = types.bool;
          default = false;
        };
        uid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
        shell = mkOption {
          type = types.nullOr (types.either types.shellPackage (passwdEntry types.path));
          default = null;
        };
      };
    };

  groupModule =
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = passwdEntry types.str;
          default = name;
        };
        gid = mkOption {
          type = types.nullOr types.int;
          default = null;
        };
        members = mkOption {
          type = types.listOf (passwdEntry types.str);
          default = [ ];
        };
      };
    };

  # nixos/modules/services/databases/postgresql.nix: ensureUsers
  ensureUserModule = {
    options = {
      name = mkOption { type = types.str; };
      ensureDBOwnership = mkOption {
        type = types.bool;
        default = false;
      };
      ensureClauses = mkOption {
        type = types.submodule {
          freeformType = types.attrsOf (
            types.oneOf [
              types.str
              types.int
              types.bool
            ]
          );
        };
        default = { };
      };
    };
  };

  # nixos/modules/services/databases/redis.nix: servers.<name>
  redisServerModule =
    { name, config, ... }:
    let
      redisName = if name == "" then "redis" else "redis-${name}";
    in
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = false;
        };
        user = mkOption {
          type = types.str;
          default = redisName;
        };
        group = mkOption {
          type = types.str;
          default = config.user;
        };
        port = mkOption {
          type = types.port;
          default = if name == "" then 6379 else 0;
        };
        bind = mkOption {
          type = types.nullOr types.str;
          default = "127.0.0.1";
        };
        unixSocket = mkOption {
          type = types.nullOr types.path;
          default = "/run/${redisName}/redis.sock";
        };
        unixSocketPerm = mkOption {
          type = types.int;
          default = 660;
        };
        openFirewall = mkOption {
          type = types.bool;
          default = false;
        };
        requirePassFile = mkOption {
          type = types.nullOr types.path;
          default = null;
        };
        save = mkOption {
          type = types.listOf (types.listOf types.int);
          default = [
            [ 900 1 ]
            [ 300 10 ]
            [ 60 10000 ]
          ];
        };
        appendOnly = mkOption {
          type = types.bool;
          default = false;
        };
        databases = mkOption {
          type = types.int;
          default = 16;
        };
        maxclients = mkOption {
          type = types.int;
          default = 10000;
        };
        logLevel = mkOption {
          type = types.str;
          default = "notice";
        };
        extraParams = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        settings = mkOption {
          type = types.attrsOf (
            types.oneOf [
              types.bool
              types.int
              types.str
              (types.listOf types.str)
            ]
          );
          default = { };
        };
      };
    };
in
{
  options = {
    # nixos/modules/misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
      internal = true;
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
      internal = true;
    };

    # nixos/modules/system/boot/systemd.nix, systemd/tmpfiles.nix
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule serviceModule);
      default = { };
    };
    systemd.targets = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            description = mkOption {
              type = types.singleLineStr;
              default = "";
            };
            wantedBy = unitList;
            requiredBy = unitList;
            wants = unitList;
            requires = unitList;
            after = unitList;
            before = unitList;
            partOf = unitList;
          };
        }
      );
      default = { };
    };
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    # nixos/modules/config/users-groups.nix
    users.users = mkOption {
      type = types.attrsOf (types.submodule userModule);
      default = { };
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule groupModule);
      default = { };
    };

    # nixos/modules/services/networking/firewall.nix
    networking.firewall.enable = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };

    # nixos/modules/services/databases/postgresql.nix
    services.postgresql = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      # nixpkgs picks the default by system.stateVersion (config section below)
      package = mkOption { type = types.package; };
      ensureDatabases = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      ensureUsers = mkOption {
        type = types.listOf (types.submodule ensureUserModule);
        default = [ ];
      };
    };

    # nixos/modules/services/databases/redis.nix
    services.redis.servers = mkOption {
      type = types.attrsOf (types.submodule redisServerModule);
      default = { };
    };

    # nixos/modules/services/search/qdrant.nix
    services.qdrant = {
      enable = lib.mkEnableOption "Qdrant";
      package = lib.mkPackageOption pkgs "qdrant" { };
      webUIPackage = lib.mkPackageOption pkgs "qdrant-web-ui" { };
      settings = mkOption {
        type = (pkgs.formats.yaml { }).type;
        default = { };
      };
    };

    # nixos/modules/config/system-path.nix
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };

    # nixos/modules/misc/nixpkgs.nix
    nixpkgs.overlays = mkOption {
      type = types.listOf overlay;
      default = [ ];
    };
  };

  # What nixpkgs' modules define in their `config` sections, so that a
  # definition of ours that collides with one of theirs fails here as it does
  # on a real system (tests/eval/NIXPKGS-FACTS.md lists each).
  config = lib.mkMerge [
    # nixos/modules/services/databases/postgresql.nix
    (lib.mkIf config.services.postgresql.enable {
      # stateVersion 25.11 up to 26.11: postgresql_17 (the hosts are 26.05)
      services.postgresql.package = lib.mkDefault pkgs.postgresql_17;
      systemd.services.postgresql = {
        description = "PostgreSQL Server";
        after = [ "network.target" ];
        partOf = [ "postgresql.target" ];
        wants = [ "postgresql.target" ];
        serviceConfig = {
          Type = "notify";
          User = "postgres";
          Group = "postgres";
          RuntimeDirectory = "postgresql";
        };
      };
      # ensureDatabases / ensureUsers run here
      systemd.services.postgresql-setup = {
        description = "PostgreSQL Setup Scripts";
        after = [ "postgresql.service" ];
        requires = [ "postgresql.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          User = "postgres";
          Group = "postgres";
        };
      };
      systemd.targets.postgresql = {
        description = "PostgreSQL";
        requires = [
          "postgresql.service"
          "postgresql-setup.service"
        ];
        wantedBy = [ "multi-user.target" ];
      };
    })
    # nixos/modules/services/databases/redis.nix: one unit per enabled server
    {
      systemd.services = lib.mapAttrs' (
        name: conf:
        let
          redisName = if name == "" then "redis" else "redis-${name}";
        in
        lib.nameValuePair redisName {
          description = "Redis Server - ${redisName}";
          after = [ "network.target" ];
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            Type = "notify";
            User = conf.user;
            Group = conf.group;
            RuntimeDirectory = redisName;
            StateDirectory = redisName;
          };
        }
      ) (lib.filterAttrs (_: conf: conf.enable) config.services.redis.servers);
    }
    # nixos/modules/services/search/qdrant.nix
    (lib.mkIf config.services.qdrant.enable {
      services.qdrant.settings = {
        service.static_content_dir = lib.mkDefault config.services.qdrant.webUIPackage;
        storage.storage_path = lib.mkDefault "/var/lib/qdrant/storage";
        storage.snapshots_path = lib.mkDefault "/var/lib/qdrant/snapshots";
        service.http_port = lib.mkDefault 6333;
        service.grpc_port = lib.mkDefault 6334;
        service.enable_cors = lib.mkDefault true;
        cluster.enabled = lib.mkDefault false;
        service.host = lib.mkDefault "127.0.0.1";
        telemetry_disabled = lib.mkDefault true;
      };
      systemd.services.qdrant = {
        description = "Vector Search Engine for the next generation of AI applications";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        serviceConfig = {
          LimitNOFILE = 65536;
          ExecStart = "${config.services.qdrant.package}/bin/qdrant --config-path ${
            (pkgs.formats.yaml { }).generate "config.yaml" config.services.qdrant.settings
          }";
          DynamicUser = true;
          StateDirectory = "qdrant";
          ProtectProc = "noaccess";
          ProcSubset = "pid";
        };
      };
    })
  ];
}
