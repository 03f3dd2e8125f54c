# Offline evaluation tests of pkgs/hydra-coordinator/package.nix against the
# nixpkgs stand-ins of tests/package/standins.nix (facts recorded in
# NIXPKGS-FACTS.md): the check phase gets the programs its tests need, and the
# package's Python dependencies are the ones coordinator/pyproject.toml
# declares, in ranges that admit what nixos-26.05 ships (nixpkgs' build checks
# the wheel's requirements against its own packages). Run by tests/eval/run.
{ lib }:

let
  evaluated = import ../package/eval.nix { inherit lib; };
  inherit (evaluated) facts pyproject;

  normalize = name: lib.toLower (lib.replaceStrings [ "_" "." ] [ "-" "-" ] name);

  # "mcp>=1.26,<3" -> { name = "mcp"; constraints = [ { op = ">="; version = "1.26"; } ... ]; }
  parseRequirement =
    text:
    let
      m = builtins.match "[[:space:]]*([A-Za-z0-9._-]+)[[:space:]]*(\\[[^]]*])?[[:space:]]*([^;]*)(;.*)?" text;
      spec = lib.replaceStrings [ " " ] [ "" ] (lib.elemAt m 2);
      parseOne =
        c:
        let
          p = builtins.match "(>=|<=|==|!=|~=|>|<)(.+)" c;
        in
        if p == null then
          throw "${text}: cannot read the constraint '${c}'"
        else
          {
            op = lib.elemAt p 0;
            version = lib.elemAt p 1;
          };
    in
    {
      name = normalize (lib.elemAt m 0);
      constraints = map parseOne (lib.filter (c: c != "") (lib.splitString "," spec));
    };

  admits =
    shipped: constraint:
    let
      c = builtins.compareVersions shipped constraint.version;
    in
    {
      ">=" = c >= 0;
      ">" = c > 0;
      "<=" = c <= 0;
      "<" = c < 0;
      "==" = c == 0;
      "!=" = c != 0;
      "~=" = throw "~= is not checked here; write >= and < instead";
    }
    .${constraint.op};

  project = pyproject.project;
  runtime = map parseRequirement project.dependencies;
  speed = map parseRequirement (project.optional-dependencies.speed or [ ]);
  testExtra = map parseRequirement (project.optional-dependencies.test or [ ]);

  names = reqs: lib.sort lib.lessThan (lib.unique (map (r: r.name) reqs));
  sorted = xs: lib.sort lib.lessThan (lib.unique (map normalize xs));

  # Linters of the test extra that the Nix build does not run.
  lintOnly = [
    "mypy"
    "ruff"
  ];

  outOfRange = lib.concatMap (
    r:
    let
      shipped = facts.nixos2605Versions.${r.name} or null;
    in
    lib.optional (
      shipped != null && !(lib.all (admits shipped) r.constraints)
    ) "${r.name} ${shipped} (nixos-26.05) is outside the range of pyproject.toml"
  ) runtime;
in
{
  # nixpkgs' prometheus keeps promtool in its `cli` output; test_metrics_pass_promtool runs it.
  testCheckPhaseHasPromtool = {
    expr = lib.elem "promtool" facts.checkPrograms;
    expected = true;
  };

  # The check phase runs no servers: their tests carry `needs_server` and run in the VM tests.
  testCheckPhaseStartsNoServers = {
    expr = lib.intersectLists [
      "initdb"
      "pg_ctl"
      "postgres"
      "redis-server"
    ] facts.checkPrograms;
    expected = [ ];
  };

  testNeedsServerIsDeselected = {
    expr = facts.pytest.disabledTestMarks;
    expected = [ "needs_server" ];
  };

  testNeedsServerMarkerIsDeclared = {
    expr = lib.any (m: lib.hasPrefix "needs_server:" m) pyproject.tool.pytest.ini_options.markers;
    expected = true;
  };

  # The wheel requires what pyproject.toml lists; the package must provide each
  # of them (and nothing the project does not declare). The `speed` extra is
  # part of the package (uvicorn picks it up when importable).
  testDependenciesMatchPyproject = {
    expr = sorted facts.dependencies;
    expected = names (runtime ++ speed);
  };

  # The test extra may narrow a runtime dependency for the development environment (mcp>=2:
  # the check phase runs with nixos-26.05's 1.x); those are not check inputs.
  testCheckInputsMatchTestExtra = {
    expr = sorted facts.checkPython;
    expected = lib.subtractLists (lintOnly ++ names runtime) (names testExtra);
  };

  testBuildSystemMatchesPyproject = {
    expr = sorted facts.buildSystem;
    expected = sorted (map (r: (parseRequirement r).name) pyproject.build-system.requires);
  };

  testRangesAdmitNixos2605 = {
    expr = outOfRange;
    expected = [ ];
  };

  # The tests the check phase runs are in the package's source.
  testSourceHasTheTests = {
    expr = lib.any (f: lib.hasPrefix "tests/" f) facts.srcFiles && facts.doCheck;
    expected = true;
  };
}
