# Stand-in for nixpkgs' NixOS test framework (nixos/lib/testing/*.nix), as far
# as it decides whether a test module of tests/vm/ evaluates and what its test
# script is: the test options our tests may set, with nixpkgs' types, and the
# module arguments a test module gets (`config`, `options`, `lib`, `pkgs`,
# `nodes`, ...). Facts and the files they were read from are in
# tests/eval/NIXPKGS-FACTS.md ("NixOS VM tests"). Used by tests/vm/typecheck/eval.nix.
#
# Nodes are evaluated with lib.evalModules over the NixOS option stand-ins of
# tests/eval/lib/ (plus a free-form root for options those do not declare),
# only when a test script reads them (`testScript = { nodes, ... }: ...`).
{
  lib,
  config,
  evalNode,
  ...
}:

let
  inherit (lib) mkOption types;
in
{
  options = {
    # name.nix
    name = mkOption { type = types.str; };

    # meta.nix
    meta.maintainers = mkOption {
      type = types.listOf types.raw;
      default = [ ];
    };

    # nodes.nix
    nodes = mkOption {
      type = types.lazyAttrsOf types.deferredModule;
      default = { };
    };
    containers = mkOption {
      type = types.lazyAttrsOf types.deferredModule;
      default = { };
    };
    defaults = mkOption {
      type = types.deferredModule;
      default = { };
    };
    nodeDefaults = mkOption {
      type = types.deferredModule;
      default = { };
    };
    containerDefaults = mkOption {
      type = types.deferredModule;
      default = { };
    };
    extraBaseModules = mkOption {
      type = types.deferredModule;
      default = { };
    };
    node.specialArgs = mkOption {
      type = types.lazyAttrsOf types.raw;
      default = { };
    };
    node.pkgs = mkOption {
      type = types.nullOr types.raw;
      default = null;
    };
    node.pkgsReadOnly = mkOption {
      type = types.bool;
      default = config.node.pkgs != null;
    };

    # testScript.nix: a function gets only the arguments it names.
    testScript = mkOption {
      type = types.either types.str (types.functionTo types.str);
      apply = v: if lib.isFunction v then args: v (builtins.intersectAttrs (lib.functionArgs v) args) else v;
    };

    # driver.nix
    skipTypeCheck = mkOption {
      type = types.bool;
      default = false;
    };
    skipLint = mkOption {
      type = types.bool;
      default = false;
    };
    enableOCR = mkOption {
      type = types.bool;
      default = false;
    };
    globalTimeout = mkOption {
      type = types.int;
      default = 60 * 60;
    };
    extraPythonPackages = mkOption {
      type = types.functionTo (types.listOf types.raw);
      default = _: [ ];
    };
    extraDriverArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    logLevel = mkOption {
      type = types.enum [
        "debug"
        "info"
        "warning"
        "error"
      ];
      default = "info";
    };

    # What the driver type-checks (read by eval.nix).
    evaluated = mkOption {
      type = types.raw;
      internal = true;
    };
  };

  config =
    let
      evaluatedNodes = lib.mapAttrs (
        name: module:
        evalNode {
          inherit name module;
          inherit (config) defaults nodeDefaults extraBaseModules;
          inherit (config.node) specialArgs;
          nodes = evaluatedNodes;
        }
      ) config.nodes;
    in
    {
      # nodes.nix: the test module (and its script) get `nodes` = the nodes' configurations.
      _module.args.nodes = evaluatedNodes;
      _module.args.containers = config.containers;

      evaluated = {
        inherit (config) name skipTypeCheck skipLint;
        machines = lib.attrNames config.nodes;
        containers = lib.attrNames config.containers;
        # testScript.nix: testScriptString
        script = if lib.isFunction config.testScript then config.testScript { nodes = evaluatedNodes; } else config.testScript;
        # What a real evaluation of each node would reject: failed assertions,
        # and the coordinator's credentials (their type refuses store paths).
        nodes = lib.mapAttrs (_: node: {
          failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) (node.assertions or [ ]));
          credentials = node.services.hydra-coordinator.credentials or { };
        }) evaluatedNodes;
        # network.nix: every node is on VLAN 1 unless it sets virtualisation.vlans.
        vlans = lib.unique (
          lib.concatMap (node: node.virtualisation.vlans or [ 1 ]) (lib.attrValues evaluatedNodes)
        );
      };
    };
}
