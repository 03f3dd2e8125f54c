# hydra-compute: Ollama on 2x RTX 5070 Ti, Open WebUI, GPU containers.
{ ... }:
{
  imports = [
    ../modules.nix
    ./hardware-configuration.nix
  ];

  networking.hostName = "hydra-compute";

  hydra.gpu.nvidia.gpus = [
    {
      name = "RTX 5070 Ti";
      architecture = "blackwell";
      memoryGiB = 16;
      powerLimitWatts = 250;
    }
    {
      name = "RTX 5070 Ti";
      architecture = "blackwell";
      memoryGiB = 16;
      powerLimitWatts = 250;
    }
  ];

  hydra.roles.compute = {
    models = [
      "qwen3:14b"
      "gemma3:12b"
    ];
    # Holds OPENAI_API_KEY (a coordinator client key) and WEBUI_SECRET_KEY.
    openWebui.environmentFile = "/run/secrets/hydra/open-webui.env";
  };

  # nixpkgs settings belong to the host (the modules may be used with a
  # nixpkgs passed in from outside). The NVIDIA driver and CUDA are unfree.
  # CUDA code is built for this host's cards only, RTX 5070 Ti (12.0); an
  # assertion checks the list against hydra.gpu.nvidia.gpus. cudaSupport
  # stays off: only Ollama (ollama-cuda) is a CUDA build.
  nixpkgs.config = {
    allowUnfree = true;
    cudaCapabilities = [ "12.0" ];
  };

  system.stateVersion = "26.05";
}
