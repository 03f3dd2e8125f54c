# NixOS module for the coordinator VM tests: two fake OpenAI-compatible
# upstreams on loopback (tests/fake_openai), a "local" one standing in for
# Ollama and a "cloud" one standing in for a paid API, and the coordinator
# configured to route between them.
{ lib, pkgs, ... }:

let
  fakeOpenai = pkgs.callPackage ../../fake_openai { };

  mkUpstream =
    {
      name,
      port,
      models,
    }:
    {
      description = "Fake OpenAI-compatible upstream (${name})";
      wantedBy = [ "multi-user.target" ];
      before = [ "hydra-coordinator.service" ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs [
          (lib.getExe fakeOpenai)
          "--host"
          "127.0.0.1"
          "--port"
          (toString port)
          "--name"
          name
          "--models"
          (lib.concatStringsSep "," models)
          "--log"
          "/var/lib/fake-${name}/requests.jsonl"
        ];
        DynamicUser = true;
        StateDirectory = "fake-${name}";
        Restart = "no";
      };
    };
in
{
  systemd.services.fake-local = mkUpstream {
    name = "local";
    port = 11434;
    models = [ "llama3" ];
  };
  systemd.services.fake-cloud = mkUpstream {
    name = "cloud";
    port = 18080;
    models = [ "gpt-4.1-mini" ];
  };

  # A test key: in the store here, which the module forbids only for paths it
  # renders; real hosts use sops-nix/agenix paths.
  environment.etc."hydra-test/cloud-key".text = "sk-test-cloud-key";
  environment.etc."hydra-test/cloud-key".mode = "0400";

  environment.systemPackages = [
    pkgs.curl
    pkgs.jq
  ];

  virtualisation.memorySize = 2048;

  services.hydra-coordinator = {
    enable = true;
    credentials.cloud-key = "/etc/hydra-test/cloud-key";
    settings = {
      backends = [
        {
          name = "local";
          kind = "local";
          base_url = "http://127.0.0.1:11434/v1";
          models = [ "llama3" ];
        }
        {
          name = "cloud";
          kind = "cloud";
          base_url = "http://127.0.0.1:18080/v1";
          api_key_file = "cloud-key";
          models = [ "gpt-4.1-mini" ];
        }
      ];
      # Notice a stopped upstream quickly.
      health = {
        interval_s = 1.0;
        timeout_s = 1.0;
        failure_threshold = 1;
        cooldown_s = 2.0;
      };
      log.level = "debug";
    };
  };
}
