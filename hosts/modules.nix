# Every lab module, by relative path, so hosts evaluate with or without
# the flake (the flake exports the same files as nixosModules.*).
{
  imports = [
    ../modules/lab
    ../modules/gpu
    ../modules/tabbyapi.nix
    ../modules/roles
    ../modules/monitoring
    ./lab.nix
  ]
  # services.hydra-coordinator comes from modules/coordinator.nix (branch
  # `nix`). Until both branches are merged it may be missing; the eval
  # tests then use tests/eval/lib/coordinator-standin.nix. Drop this guard
  # after the merge.
  ++ builtins.filter builtins.pathExists [ ../modules/coordinator.nix ];
}
