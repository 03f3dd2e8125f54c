# hydra-ai: TabbyAPI on an RTX 5090 + RTX 4090. Its role comes from
# hosts/lab.nix; this file holds the hardware facts.
{ ... }:
{
  imports = [
    ../modules.nix
    ./hardware-configuration.nix
  ];

  networking.hostName = "hydra-ai";

  # PCI bus order = CUDA order (CUDA_DEVICE_ORDER=PCI_BUS_ID); check with
  # `nvidia-smi --query-gpu=index,name,pci.bus_id --format=csv`.
  hydra.gpu.nvidia.gpus = [
    {
      name = "RTX 5090";
      architecture = "blackwell";
      memoryGiB = 32;
      powerLimitWatts = 450;
    }
    {
      name = "RTX 4090";
      architecture = "ada";
      memoryGiB = 24;
      powerLimitWatts = 350;
    }
  ];

  # A model folder under /var/lib/hydra-tabbyapi/models (exl3 or exl2).
  hydra.roles.ai.model.name = "Qwen3-32B-exl3-6.0bpw";

  # nixpkgs settings belong to the host (the modules may be used with a
  # nixpkgs passed in from outside). The NVIDIA driver and CUDA are unfree.
  # CUDA code is built for this host's cards only, RTX 5090 (12.0) and
  # RTX 4090 (8.9); an assertion checks the list against
  # hydra.gpu.nvidia.gpus. cudaSupport stays off: only TabbyAPI's stack
  # (pkgsCuda.tabbyapi) is a CUDA build.
  nixpkgs.config = {
    allowUnfree = true;
    cudaCapabilities = [
      "12.0"
      "8.9"
    ];
  };

  system.stateVersion = "26.05";
}
