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

  # A model folder under /var/lib/tabbyapi/models (exl3 or exl2).
  hydra.roles.ai.model.name = "Qwen3-32B-exl3-6.0bpw";

  system.stateVersion = "26.05";
}
