# Every lab module, by relative path, so hosts evaluate with or without
# the flake (the flake exports the same files as nixosModules.*).
{
  imports = [
    ../modules/coordinator.nix
    ../modules/lab
    ../modules/gpu
    ../modules/tabbyapi.nix
    ../modules/roles
    ../modules/monitoring
    ./lab.nix
  ];
}
