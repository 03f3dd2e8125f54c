# The stand-ins in lib/stubs.nix must reject what NixOS rejects, or the module
# tests would pass on values a real system refuses.
{ lib }:

let
  evalStubs =
    module:
    (lib.evalModules {
      modules = [
        { _module.args.pkgs = import ./lib/fake-pkgs.nix { inherit lib; }; }
        ./lib/stubs.nix
        module
      ];
    }).config;

  fails = value: !(builtins.tryEval (builtins.deepSeq value true)).success;
in
{
  testUnitNamesNeedASuffix = {
    expr = fails (evalStubs { systemd.services.a.after = [ "postgresql" ]; }).systemd.services.a.after;
    expected = true;
  };

  testUnitNamesAccepted = {
    expr =
      (evalStubs {
        systemd.services.a.after = [
          "postgresql.target"
          "redis-x.service"
        ];
      }).systemd.services.a.after;
    expected = [
      "postgresql.target"
      "redis-x.service"
    ];
  };

  testServiceConfigListsConcatenate = {
    expr =
      (evalStubs {
        imports = [
          { systemd.services.a.serviceConfig.SupplementaryGroups = [ "a" ]; }
          { systemd.services.a.serviceConfig.SupplementaryGroups = [ "b" ]; }
        ];
      }).systemd.services.a.serviceConfig.SupplementaryGroups;
    expected = [
      "a"
      "b"
    ];
  };

  testServiceConfigScalarsConflict = {
    expr = fails (evalStubs {
      imports = [
        { systemd.services.a.serviceConfig.User = "a"; }
        { systemd.services.a.serviceConfig.User = "b"; }
      ];
    }).systemd.services.a.serviceConfig.User;
    expected = true;
  };

  testDescriptionIsOneLine = {
    expr = fails (evalStubs { systemd.services.a.description = "two\nlines"; }).systemd.services.a.description;
    expected = true;
  };

  testPortRange = {
    expr = fails (evalStubs { networking.firewall.allowedTCPPorts = [ 70000 ]; }).networking.firewall.allowedTCPPorts;
    expected = true;
  };

  testRedisNamedInstanceDefaults = {
    expr =
      let
        server = (evalStubs { services.redis.servers.x.enable = true; }).services.redis.servers.x;
      in
      {
        inherit (server)
          port
          unixSocket
          user
          group
          ;
      };
    expected = {
      port = 0;
      unixSocket = "/run/redis-x/redis.sock";
      user = "redis-x";
      group = "redis-x";
    };
  };

  testEnsureUsersTyped = {
    expr = fails (evalStubs {
      services.postgresql.ensureUsers = [
        {
          name = "x";
          ensureDBOwnership = "yes";
        }
      ];
    }).services.postgresql.ensureUsers;
    expected = true;
  };

  testUnknownOptionRejected = {
    expr = fails (evalStubs { services.postgresql.ensureDatabase = [ "x" ]; }).services.postgresql;
    expected = true;
  };
}
