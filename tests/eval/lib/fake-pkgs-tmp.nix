# TEMPORARY stand-in for tests/eval/lib/fake-pkgs.nix (branch `nix`): a
# fake `pkgs` for module evaluation without nixpkgs. Derivations are attrsets
# with type = "derivation" and a fake outPath; formats.* render with
# builtins.toJSON (YAML is a superset of JSON). Swapped at merge.
{ lib }:
let
  drv =
    name: extra:
    {
      type = "derivation";
      inherit name;
      pname = name;
      version = extra.version or "0";
      outPath = "/nix/store/00000000000000000000000000000000-${name}";
      meta.mainProgram = name;
      override = _: drv name extra;
      overrideAttrs = _: drv name extra;
    }
    // extra;

  jsonType =
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

  format = _: {
    type = jsonType;
    generate = name: value: builtins.toFile name (builtins.toJSON value);
  };

  script = name: text: drv name { inherit text; };

  nvidiaPackage = drv "nvidia-x11" {
    version = "595.71.05";
    bin = drv "nvidia-x11-bin" { };
  };
  linuxPackages = {
    nvidiaPackages = {
      stable = nvidiaPackage;
      production = nvidiaPackage;
      latest = nvidiaPackage;
      legacy_535 = drv "nvidia-x11" { version = "535.274.02"; };
    };
  };
  python3 = drv "python3" {
    withPackages = _: drv "python3-env" { };
    pkgs = { };
    interpreter = "/nix/store/fake-python3/bin/python3";
  };
in
{
  inherit lib linuxPackages python3;
  formats = {
    json = format;
    yaml = format;
  };
  writeShellScript = script;
  writeShellScriptBin = script;
  writeText = name: text: drv name { inherit text; };
  writeShellApplication = args: drv args.name { inherit (args) text; };
  linuxPackages_latest = linuxPackages;
  ollama = drv "ollama" { };
  ollama-cuda = drv "ollama-cuda" { };
  ollama-cpu = drv "ollama-cpu" { };
  tabbyapi = drv "tabbyapi" { passthru.cudaSupport = true; };
  open-webui = drv "open-webui" { };
  intel-media-driver = drv "intel-media-driver" { };
  vpl-gpu-rt = drv "vpl-gpu-rt" { };
  intel-compute-runtime = drv "intel-compute-runtime" { };
  postgresql = drv "postgresql" { version = "17.6"; };
  curl = drv "curl" { };
  jq = drv "jq" { };
  coreutils = drv "coreutils" { };
}
