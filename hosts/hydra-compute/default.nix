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

  system.stateVersion = "26.05";
}
