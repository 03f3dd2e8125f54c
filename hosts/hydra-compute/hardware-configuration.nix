# PLACEHOLDER: replace this file with the one `nixos-generate-config`
# writes on hydra-compute (/etc/nixos/hardware-configuration.nix), then keep the
# hydra.lab line below (or set the interface in hosts/lab.nix).
# What to replace: the file systems (by-uuid or by-label), the initrd
# modules, the CPU microcode line, and the interface carrying the lab address.
{ lib, ... }:
{
  boot.initrd.availableKernelModules = [
    "nvme"
    "xhci_pci"
    "ahci"
    "usbhid"
    "sd_mod"
  ];
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = true;

  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos"; # REPLACE
    fsType = "ext4";
  };
  fileSystems."/boot" = {
    device = "/dev/disk/by-label/boot"; # REPLACE
    fsType = "vfat";
    options = [
      "fmask=0077"
      "dmask=0077"
    ];
  };

  # REPLACE with the NIC on the lab LAN (`ip link`); it gets the address
  # from hosts/lab.nix. Set to null to use DHCP reservations instead.
  hydra.lab.nodes.hydra-compute.interface = "enp5s0";
  networking.useDHCP = lib.mkDefault false;

  hardware.cpu.amd.updateMicrocode = lib.mkDefault true; # REPLACE: .intel on Intel CPUs
  nixpkgs.hostPlatform = lib.mkDefault "x86_64-linux";
}
