# nixosModules.roles: the three lab roles. Each turns itself on when the
# host's entry in hydra.lab.nodes lists it.
{
  imports = [
    ./ai.nix
    ./compute.nix
    ./storage.nix
  ];
}
