# TEMPORARY copy of tests/eval/lib/stubs.nix (owned by branch `nix`), so
# the lab's eval tests run before the merge. At merge the lead deletes this
# file and points tests/eval/lib/eval-host.nix at ./stubs.nix. It declares
# exactly the options listed in the shared contract, with nixpkgs' types.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  # nixos/lib/systemd-types.nix / systemd-lib.nix `unitOption`: lists
  # concatenate, scalars must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.any (d: lib.isList d.value) defs' then
        lib.concatMap (d: lib.toList d.value) defs'
      else
        lib.mergeEqualOption loc defs';
  };
  listOfStr = mkOption {
    type = types.listOf types.str;
    default = [ ];
  };
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    systemd.services = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule {
          options = {
            description = mkOption {
              type = types.str;
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
            after = listOfStr;
            wants = listOfStr;
            requires = listOfStr;
            wantedBy = listOfStr;
            script = mkOption {
              type = types.lines;
              default = "";
            };
            path = mkOption {
              type = types.listOf (types.either types.package types.str);
              default = [ ];
            };
            startAt = mkOption {
              type = types.either types.str (types.listOf types.str);
              default = [ ];
            };
          };
        }
      );
    };
    systemd.tmpfiles.rules = listOfStr;

    users.users = mkOption {
      type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
      default = { };
    };
    users.groups = mkOption {
      type = types.attrsOf (types.submodule { freeformType = types.attrsOf types.anything; });
      default = { };
    };

    networking.firewall.enable = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall.allowedTCPPorts = mkOption {
      type = types.listOf types.port;
      default = [ ];
    };

    services.postgresql = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      package = mkOption {
        type = types.package;
        default = { type = "derivation"; name = "postgresql-17"; outPath = "/nix/store/fake-postgresql"; };
      };
      ensureDatabases = listOfStr;
      ensureUsers = mkOption {
        default = [ ];
        type = types.listOf (
          types.submodule {
            options = {
              name = mkOption { type = types.str; };
              ensureDBOwnership = mkOption {
                type = types.bool;
                default = false;
              };
              ensureClauses = mkOption {
                type = types.attrsOf (types.nullOr types.bool);
                default = { };
              };
            };
          }
        );
      };
    };

    services.redis.servers = mkOption {
      default = { };
      type = types.attrsOf (
        types.submodule (
          { name, ... }:
          {
            options = {
              enable = mkOption {
                type = types.bool;
                default = false;
              };
              port = mkOption {
                type = types.port;
                default = if name == "" then 6379 else 0;
              };
              bind = mkOption {
                type = types.nullOr types.str;
                default = "127.0.0.1";
              };
              openFirewall = mkOption {
                type = types.bool;
                default = false;
              };
              requirePassFile = mkOption {
                type = types.nullOr types.path;
                default = null;
              };
            };
          }
        )
      );
    };

    services.qdrant.enable = mkOption {
      type = types.bool;
      default = false;
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    nixpkgs.overlays = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
  };
}
