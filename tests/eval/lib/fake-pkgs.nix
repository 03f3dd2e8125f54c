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
{ lib }:

let
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
in
{
  inherit lib;
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

  inherit writeText;
  writeShellScript = writeText;
  writeShellScriptBin = name: text: mkFake name {
    inherit text;
    meta.mainProgram = name;
  };
  runCommand = name: env: buildCommand: mkFake name (env // { inherit buildCommand; });
  callPackage = path: _args: mkFake "callPackage-${baseNameOf (dirOf path)}" { };

  hydra-coordinator = mkPackage "hydra-coordinator" "0.1.0" "hydra-coordinator";
  postgresql = mkPackage "postgresql" "17.6" "psql";
  redis = mkPackage "redis" "8.2.1" "redis-server";
  qdrant = mkPackage "qdrant" "1.15.4" "qdrant";
  curl = mkPackage "curl" "8.15.0" "curl";
  jq = mkPackage "jq" "1.8.1" "jq";
}
