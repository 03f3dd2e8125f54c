# The hybrid coordinator, built from ../../coordinator with nixpkgs' Python
# packages only. Called with `callPackage` (see `overlays.default` in
# flake.nix); the flake passes `hydraVmTests` so that `passthru.tests` points
# at the NixOS VM tests in tests/vm/.
{
  lib,
  fetchurl,
  prometheus,
  python3Packages,
  testers,
  hydraVmTests ? { },
}:

let
  root = ../../coordinator;

  # Only what the wheel and the test suite need: a local .venv, caches or
  # bench results must not change the store path.
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.intersection (lib.fileset.unions [
      (root + "/pyproject.toml")
      (root + "/README.md")
      (root + "/hydra_coordinator")
      (lib.fileset.maybeMissing (root + "/tests"))
    ]) (lib.fileset.fileFilter (file: !(file.hasExt "pyc")) root);
  };

  # OpenAI's cl100k_base BPE file, to count tokens when an upstream reports no
  # usage. Fixed-output, so the coordinator never downloads it at run time; the
  # hash is the one tiktoken itself checks.
  cl100k = fetchurl {
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken";
    sha256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7";
  };

  # The single source of the version is hydra_coordinator/__init__.py
  # (hatch reads it from there too).
  # Runtime dependencies, also used by the flake's dev shell.
  pythonDependencies =
    ps: with ps; [
      aiohttp
      anyio
      click
      fastapi
      httpx
      orjson
      prometheus-client
      pydantic
      uvicorn
      # the `speed` extra: uvicorn picks them up when importable
      httptools
      uvloop
      # privacy detectors, MCP, stores
      detect-secrets
      google-re2
      mcp
      phonenumbers
      psycopg
      psycopg-pool
      python-stdnum
      qdrant-client
      redis
      starlette
      tiktoken
    ];

  version = lib.head (
    builtins.match ''.*__version__ = "([^"]+)".*'' (
      builtins.readFile (root + "/hydra_coordinator/__init__.py")
    )
  );
in
python3Packages.buildPythonApplication (finalAttrs: {
  pname = "hydra-coordinator";
  inherit version src;
  pyproject = true;

  build-system = [ python3Packages.hatchling ];

  dependencies = pythonDependencies python3Packages;

  nativeCheckInputs =
    (with python3Packages; [
      openai
      pytest-asyncio
      pytestCheckHook
      # tests/test_openapi.py fuzzes the API from its /openapi.json
      schemathesis
    ])
    # promtool checks the /metrics output. nixpkgs' prometheus moves bin/promtool
    # to its `cli` output (outputs = [ "out" "doc" "cli" ]); `prometheus` alone
    # is `out`, which has no promtool.
    ++ [ prometheus.cli ];

  makeWrapperArgs = [ "--set-default HYDRA_TOKENIZER_FILE ${cl100k}" ];

  preCheck = ''
    export HYDRA_TOKENIZER_FILE=${cl100k}
    export HOME=$TMPDIR
  '';

  # Without a tests/ directory there is nothing to run (pytest would exit 5,
  # "no tests collected").
  doCheck = builtins.pathExists (root + "/tests");

  # Tests that need a PostgreSQL or Redis server carry the `needs_server`
  # marker; they run in the NixOS VM tests instead (tests/vm/).
  disabledTestMarks = [ "needs_server" ];

  pythonImportsCheck = [ "hydra_coordinator" ];

  passthru = {
    inherit pythonDependencies;
    tokenizerFile = cl100k;
    tests = hydraVmTests // {
      version = testers.testVersion {
        package = finalAttrs.finalPackage;
        command = "hydra-coordinator --version";
      };
    };
  };

  meta = {
    description = "Hybrid LLM coordinator: one OpenAI-compatible endpoint routing between local GPUs and cloud APIs";
    license = lib.licenses.mit;
    mainProgram = "hydra-coordinator";
    maintainers = [ ];
    platforms = lib.platforms.linux;
  };
})
