# Intel Arc (DG2, e.g. A380) for media transcoding: GuC/HuC firmware, the
# iHD VA-API driver, the oneVPL runtime (QSV on Arc; intel-media-sdk only
# covers up to 11th gen) and the compute runtime (OpenCL tone mapping).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.hydra.gpu.intelArc;
in
{
  options.hydra.gpu.intelArc = {
    enable = lib.mkEnableOption "Intel Arc media acceleration (VA-API/QSV)";
    renderDevice = lib.mkOption {
      type = lib.types.str;
      default = "/dev/dri/renderD128";
      description = ''
        DRM render node of the Arc card. With an integrated GPU present too
        it may be renderD129: check `ls -l /dev/dri/by-path`.
      '';
    };
  };

  config = lib.mkIf cfg.enable {
    hardware.enableRedistributableFirmware = lib.mkDefault true;
    hardware.graphics = {
      enable = true;
      extraPackages = [
        pkgs.intel-media-driver
        pkgs.vpl-gpu-rt
        pkgs.intel-compute-runtime
      ];
    };
  };
}
