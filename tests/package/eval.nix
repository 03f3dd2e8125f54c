# pkgs/hydra-coordinator/package.nix evaluated against the nixpkgs stand-ins
# (standins.nix) with nixpkgs' real lib: what its build and check phase would
# get. Used by tests/eval/test-package.nix (evaluation tests) and by
# tests/package/check_phase.py (which runs the check phase the same way).
#
#   nix-instantiate --eval --strict --json -E \
#     'import tests/package/eval.nix { lib = import <nixpkgs/lib>; }' -A facts
{ lib }:

let
  # Nix before 2.14 has no builtins.readFileType, which lib.fileset needs: the
  # same answer from readDir (the development machine has Nix 2.8).
  libWithPathType =
    if builtins ? readFileType then
      lib
    else
      lib.extend (
        _: prev: {
          filesystem = prev.filesystem // {
            pathType =
              path: if dirOf path == path then "directory" else (builtins.readDir (dirOf path)).${baseNameOf path};
          };
        }
      );

  # Everything of lib is real except fileset.toSource, which would copy the
  # source into the store: here it lists the files the package's `src` holds.
  libForEval = lib.recursiveUpdate libWithPathType {
    fileset.toSource =
      { root, fileset }:
      {
        standinSource = true;
        root = toString root;
        files = map toString (libWithPathType.fileset.toList fileset);
      };
  };

  standins = import ./standins.nix { lib = libForEval; };

  package = lib.callPackageWith standins ../../pkgs/hydra-coordinator/package.nix { };

  # The programs a list of inputs puts on PATH (each input's bin/).
  programs = inputs: lib.sort lib.lessThan (lib.unique (lib.concatMap (d: d.bin or [ ]) inputs));

  pythonOf = inputs: map (d: d.pypi) (lib.filter (d: d.pythonModule or false) inputs);

  pyprojectPath = ../../coordinator/pyproject.toml;
in
{
  inherit package standins;

  # What the check-phase emulation and the tests read, as plain data.
  facts = {
    inherit (package) pname version doCheck;
    # relative to coordinator/: the files of `src`
    srcFiles = map (lib.removePrefix "${toString ../../coordinator}/") package.src.files;
    dependencies = pythonOf package.dependencies;
    buildSystem = pythonOf package.build-system;
    checkPython = pythonOf package.nativeCheckInputs;
    checkPrograms = programs package.nativeCheckInputs;
    # nixos-26.05's versions where established (PyPI name -> version)
    nixos2605Versions = lib.listToAttrs (
      lib.concatMap (
        d:
        lib.optional (d.nixos2605Version or null != null) (lib.nameValuePair d.pypi d.nixos2605Version)
      ) (lib.attrValues standins.python3Packages)
    );
    preCheck = package.preCheck or "";
    # fixed-output downloads the build uses, by the name their placeholder carries
    fetched = lib.listToAttrs (
      map (d: lib.nameValuePair d.name d.sha256) (
        lib.filter (d: d ? url) (lib.attrValues (package.passthru or { }))
      )
    );
    # pytestCheckHook's inputs (nixpkgs' pytest-check-hook.sh reads these)
    pytest = {
      enabledTests = package.enabledTests or [ ];
      disabledTests = package.disabledTests or [ ];
      enabledTestPaths = package.enabledTestPaths or [ ];
      disabledTestPaths = package.disabledTestPaths or [ ];
      enabledTestMarks = package.enabledTestMarks or [ ];
      disabledTestMarks = package.disabledTestMarks or [ ];
      pytestFlags = package.pytestFlags or [ ];
      pytestFlagsArray = package.pytestFlagsArray or [ ];
    };
    pythonImportsCheck = package.pythonImportsCheck or [ ];
  };

  pyproject = builtins.fromTOML (builtins.readFile pyprojectPath);
}
