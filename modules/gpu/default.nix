# nixosModules.gpu: NVIDIA (CUDA) and Intel Arc (media) support, each off
# until its enable option is set.
{
  imports = [
    ./nvidia.nix
    ./intel-arc.nix
  ];
}
