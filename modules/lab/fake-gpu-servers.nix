# With hydra.lab.fakeGpuServers = true, the ai and compute nodes run the
# fake OpenAI-compatible server instead of TabbyAPI and Ollama (same ports,
# same addresses), so the whole lab runs in VMs without GPUs.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  lab = config.hydra.lab;
  cfg = lab.fakeServer;
  roles = if lab.node == null then [ ] else lab.node.roles;

  mkFake =
    {
      name,
      port,
      models,
    }:
    {
      description = "Fake ${name} (OpenAI-compatible test server)";
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        ExecStart = lib.concatStringsSep " " [
          "${cfg.python}/bin/python3"
          "${cfg.script}"
          "--host ${lab.node.address}"
          "--port ${toString port}"
          "--name ${name}"
          "--models ${lib.concatStringsSep "," models}"
          "--log /var/log/fake-${name}/requests.jsonl"
        ];
        DynamicUser = true;
        LogsDirectory = "fake-${name}";
        Restart = "on-failure";
        RestartSec = 1;
      };
    };
in
{
  options.hydra.lab.fakeServer = {
    script = lib.mkOption {
      type = lib.types.path;
      default = ../../coordinator/tests/fakes/fake_openai.py;
      description = "The fake server script (aiohttp only; CLI --host --port --name --models --log).";
    };
    python = lib.mkOption {
      type = lib.types.package;
      default = pkgs.python3.withPackages (ps: [ ps.aiohttp ]);
      defaultText = lib.literalExpression "pkgs.python3.withPackages (ps: [ ps.aiohttp ])";
      description = "Python that runs the fake server.";
    };
    models = {
      tabbyapi = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ "fake-exl3-70b" ];
        description = "Models the fake TabbyAPI lists.";
      };
      ollama = lib.mkOption {
        type = lib.types.listOf lib.types.str;
        default = [ "fake-qwen3:14b" ];
        description = "Models the fake Ollama lists.";
      };
    };
  };

  config = lib.mkIf (lab.fakeGpuServers && lab.node != null) (
    lib.mkMerge [
      (lib.mkIf (lib.elem "ai" roles) {
        systemd.services.fake-tabbyapi = mkFake {
          name = "tabbyapi";
          port = lab.ports.tabbyapi;
          models = cfg.models.tabbyapi;
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.tabbyapi ];
      })
      (lib.mkIf (lib.elem "compute" roles) {
        systemd.services.fake-ollama = mkFake {
          name = "ollama";
          port = lab.ports.ollama;
          models = cfg.models.ollama;
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.ollama ];
      })
    ]
  );
}
