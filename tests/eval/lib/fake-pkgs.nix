# A small stand-in for the nixpkgs package set, enough to evaluate our NixOS
# modules with `lib.evalModules` and nothing but nixpkgs' lib. Packages are
# fake derivations (type, name, outPath, meta); builders return fake
# derivations that keep their inputs, so tests can look at what a module asked
# for:
#   (formats.json { }).generate name value  -> { text = JSON; value; ... }
#   writeText name text                     -> { text; ... }
#   writeShellScript[Bin] name text         -> { text; ... }
#   runCommand name env buildCommand        -> { buildCommand; ... } // env
#   callPackage path args                   -> fake "callPackage-<dir of path>"
# Nothing is written to the store: `nix-instantiate --eval` runs read-only.
{
  lib,
  # nixpkgs' `config` (pkgs/top-level/config.nix): what the package set was
  # built with; eval-host.nix passes the host's nixpkgs.config.
  config ? { },
}:

let
  # pkgs/top-level/config.nix defaults of the options the lab reads
  fullConfig = {
    allowUnfree = false;
    cudaSupport = false;
    cudaCapabilities = [ ];
    cudaForwardCompat = true;
  }
  // config;

  # A store-path-shaped, content-dependent path (not a real store object).
  fakeOutPath =
    name: seed:
    "${builtins.storeDir}/${builtins.substring 0 32 (builtins.hashString "sha256" "${name}\n${seed}")}-${name}";

  mkFake =
    name: attrs:
    {
      type = "derivation";
      inherit name;
      outPath = fakeOutPath name (attrs.text or attrs.buildCommand or attrs.version or "");
      meta = { };
      passthru = { };
      drvPath = fakeOutPath "${name}.drv" name;
    }
    // attrs;

  mkPackage =
    pname: version: mainProgram:
    mkFake "${pname}-${version}" {
      inherit pname version;
      meta.mainProgram = mainProgram;
    };

  # pkgs/pkgs-lib/formats.nix: json
  jsonValue =
    let
      valueType =
        lib.types.nullOr (
          lib.types.oneOf [
            lib.types.bool
            lib.types.int
            lib.types.float
            lib.types.str
            lib.types.path
            (lib.types.attrsOf valueType)
            (lib.types.listOf valueType)
          ]
        )
        // {
          description = "JSON value";
        };
    in
    valueType;

  writeText = name: text: mkFake name { inherit text; };

  # The lab's GPU modules read the driver's version and its `bin` output.
  nvidiaPackage =
    version:
    mkFake "nvidia-x11-${version}" {
      inherit version;
      pname = "nvidia-x11";
      bin = mkFake "nvidia-x11-${version}-bin" { inherit version; };
    };
  linuxPackages.nvidiaPackages = rec {
    stable = nvidiaPackage "595.84";
    production = stable;
    latest = stable;
    legacy_535 = nvidiaPackage "535.288.01";
  };
  # pkgs/by-name/ta/tabbyapi/package.nix: passthru.cudaSupport = torch.cudaSupport
  tabbyapiWith =
    cudaSupport:
    mkPackage "tabbyapi" "0-unstable-2026-06-27" "tabbyapi"
    // {
      passthru = { inherit cudaSupport; };
    };

in
{
  inherit lib;
  config = fullConfig;
  system = "x86_64-linux";
  stdenv.hostPlatform.system = "x86_64-linux";

  formats.json =
    { }:
    {
      type = jsonValue;
      generate =
        name: value:
        mkFake name {
          text = builtins.toJSON value;
          inherit value;
        };
    };
  # pkgs/pkgs-lib/formats.nix: yaml (YAML 1.2 is a superset of JSON, so the
  # JSON rendering stands in for the real output).
  formats.yaml =
    { }:
    {
      type = jsonValue;
      generate =
        name: value:
        mkFake name {
          text = builtins.toJSON value;
          inherit value;
        };
    };

  inherit writeText;
  writeShellScript = writeText;
  writeShellScriptBin = name: text: mkFake name {
    inherit text;
    meta.mainProgram = name;
  };
  writeShellApplication = args: mkFake args.name {
    inherit (args) text;
    meta.mainProgram = args.name;
  };
  runCommand = name: env: buildCommand: mkFake name (env // { inherit buildCommand; });
  callPackage = path: _args: mkFake "callPackage-${baseNameOf (dirOf path)}" { };

  hydra-coordinator = mkPackage "hydra-coordinator" "0.1.0" "hydra-coordinator";
  postgresql = mkPackage "postgresql" "17.6" "psql";
  postgresql_17 = mkPackage "postgresql" "17.6" "psql";
  redis = mkPackage "redis" "8.2.1" "redis-server";
  qdrant = mkPackage "qdrant" "1.15.4" "qdrant";
  qdrant-web-ui = mkPackage "qdrant-web-ui" "0.1.42" null;
  curl = mkPackage "curl" "8.15.0" "curl";
  jq = mkPackage "jq" "1.8.1" "jq";
  coreutils = mkPackage "coreutils" "9.7" "coreutils";

  # Used by the lab modules (modules/gpu, modules/roles, modules/lab).
  inherit linuxPackages;
  linuxPackages_latest = linuxPackages;
  python3 = mkPackage "python3" "3.13.7" "python3" // {
    withPackages = _: mkPackage "python3-env" "3.13.7" "python3";
    pkgs = { };
  };
  ollama = mkPackage "ollama" "0.12.3" "ollama";
  ollama-cuda = mkPackage "ollama-cuda" "0.12.3" "ollama";
  ollama-cpu = mkPackage "ollama-cpu" "0.12.3" "ollama";
  tabbyapi = tabbyapiWith fullConfig.cudaSupport;
  # pkgs/top-level/variants.nix: pkgsCuda = nixpkgsFun { config = super.config // { cudaSupport = true; rocmSupport = false; }; }
  pkgsCuda = import ./fake-pkgs.nix {
    inherit lib;
    config = config // {
      cudaSupport = true;
      rocmSupport = false;
    };
  };
  open-webui = mkPackage "open-webui" "0.6.30" "open-webui";
  jellyfin = mkPackage "jellyfin" "10.11.0" "jellyfin";
  intel-media-driver = mkPackage "intel-media-driver" "25.3.3" "intel-media-driver";
  vpl-gpu-rt = mkPackage "vpl-gpu-rt" "25.3.2" "vpl-gpu-rt";
  intel-compute-runtime = mkPackage "intel-compute-runtime" "25.31.34666.3" "intel-compute-runtime";
}
