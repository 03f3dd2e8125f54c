# The whole lab in three VMs: hydra-storage (coordinator, data services,
# Prometheus, Grafana), hydra-ai and hydra-compute with TabbyAPI and Ollama
# replaced by the fake OpenAI server (hydra.lab.fakeGpuServers).
#
# A test module for pkgs.testers.runNixOSTest, like every tests/vm/*.nix (see
# README.md there): the test framework calls it with all module arguments, so
# it takes `...`. Modules are imported by relative path.
#
# Secrets are written at boot into /run (systemd-tmpfiles), never passed as
# Nix store paths: the coordinator's credentials and the lab's secret-file
# options only take paths outside the store, as on a real host. Test-only
# values, so their text may sit in the store (in the tmpfiles rules).
#
# The driver, and CI through tests/vm/typecheck, type-check the script with
# mypy against the driver's API (wait_for_unit, wait_until_succeeds, ...).
{
  pkgs,
  lib,
  ...
}:
let
  addresses = {
    hydra-storage = "192.168.1.10";
    hydra-ai = "192.168.1.11";
    hydra-compute = "192.168.1.12";
  };
  clientKey = "test-client-key";
  tabbyKey = "test-tabby-key";
  # name -> content; written to /run/hydra-test/<name> at boot, root-only.
  secretDir = "/run/hydra-test";
  secrets = {
    coordinator-api-keys = clientKey;
    tabbyapi-api-key = tabbyKey;
    qdrant-api-key = "test-qdrant-key";
    grafana-secret-key = "test-only-grafana-secret";
    grafana-admin-password = "test-admin";
  };
  secretFile = name: "${secretDir}/${name}";

  common =
    name:
    { ... }:
    {
      imports = [
        ../../modules/lab
        ../../modules/gpu
        ../../modules/tabbyapi.nix
        ../../modules/roles
        ../../modules/monitoring
        ../../modules/coordinator.nix
      ];
      networking.hostName = name;
      virtualisation.vlans = [ 1 ];
      virtualisation.memorySize = 2048;
      networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
        {
          address = addresses.${name};
          prefixLength = 24;
        }
      ];
      hydra.lab = {
        lanCidrs = [ "192.168.1.0/24" ];
        nodes = {
          hydra-storage = {
            address = addresses.hydra-storage;
            roles = [ "storage" ];
          };
          hydra-ai = {
            address = addresses.hydra-ai;
            roles = [ "ai" ];
          };
          hydra-compute = {
            address = addresses.hydra-compute;
            roles = [ "compute" ];
          };
        };
        fakeGpuServers = true;
        secrets = {
          tabbyapiApiKeyFile = secretFile "tabbyapi-api-key";
          coordinatorClientKeysFile = secretFile "coordinator-api-keys";
          qdrantApiKeyFile = secretFile "qdrant-api-key";
        };
        # no model downloads in the sandbox: the coordinator's built-in embedder
        embeddings.provider = "none";
      };
      systemd.tmpfiles.rules = [
        "d ${secretDir} 0700 root root -"
      ]
      ++ lib.mapAttrsToList (name: text: "f ${secretFile name} 0400 root root - ${text}") secrets;
      environment.systemPackages = [
        pkgs.curl
        pkgs.jq
      ];
    };
in
{
  name = "hydra-lab";

  nodes = {
    hydra-storage =
      { ... }:
      {
        imports = [ (common "hydra-storage") ];
        virtualisation.memorySize = 3072;
        hydra.roles.storage.media.enable = false;
        hydra.monitoring.grafana = {
          secretKeyFile = secretFile "grafana-secret-key";
          adminPasswordFile = secretFile "grafana-admin-password";
        };
        # fast health checks so failover is quick
        services.hydra-coordinator.settings.health = {
          interval_s = 0.5;
          timeout_s = 1.0;
          failure_threshold = 2;
          cooldown_s = 2.0;
        };
      };
    hydra-ai = {
      imports = [ (common "hydra-ai") ];
    };
    hydra-compute = {
      imports = [ (common "hydra-compute") ];
      # Open WebUI is heavy and not what this test is about.
      hydra.roles.compute.openWebui.enable = false;
    };
  };

  testScript = ''
    import json

    coord = "http://${addresses.hydra-storage}:8092"
    auth = "-H 'Authorization: Bearer ${clientKey}'"

    def health():
        return json.loads(hydra_storage.succeed(f"curl -fsS {auth} {coord}/health"))

    def chat():
        out = hydra_storage.succeed(
            f"curl -sS -D /tmp/h -o /tmp/b -w '%{{http_code}}' {auth} -H 'content-type: application/json' "
            + f"-d '{json.dumps({'model': 'auto', 'messages': [{'role': 'user', 'content': 'hi'}]})}' "
            + f"{coord}/v1/chat/completions"
        )
        headers = hydra_storage.succeed("cat /tmp/h").lower()
        backend = [l.split(":", 1)[1].strip() for l in headers.splitlines() if l.startswith("x-hydra-backend:")]
        route = [l for l in headers.splitlines() if l.startswith("x-hydra-route:")]
        return int(out), (backend[0] if backend else None), bool(route)

    start_all()
    hydra_ai.wait_for_unit("fake-tabbyapi.service")
    hydra_compute.wait_for_unit("fake-ollama.service")
    hydra_storage.wait_for_unit("hydra-coordinator.service")
    hydra_storage.wait_for_open_port(8092, "${addresses.hydra-storage}")

    with subtest("lab-only ports: reachable from the lab, the world rule is not used"):
        hydra_storage.succeed("curl -fsS http://${addresses.hydra-ai}:5000/v1/models")
        hydra_storage.succeed("curl -fsS http://${addresses.hydra-compute}:11434/v1/models")
        hydra_storage.succeed("nft list ruleset | grep -q '192.168.1.0/24'")

    with subtest("the coordinator sees and routes to both nodes"):
        hydra_storage.wait_until_succeeds(
            f"curl -fsS {auth} {coord}/health | jq -e '.backends.tabbyapi == \"healthy\" and .backends.ollama == \"healthy\"'",
            timeout=120,
        )
        seen = set()
        for _ in range(6):
            status, backend, has_route = chat()
            assert status == 200, status
            assert has_route
            seen.add(backend)
        assert seen <= {"tabbyapi", "ollama"}, seen

    with subtest("failover when compute stops"):
        hydra_compute.systemctl("stop fake-ollama.service")
        hydra_storage.wait_until_succeeds(
            f"curl -fsS {auth} {coord}/health | jq -e '.backends.ollama == \"down\"'", timeout=60
        )
        for _ in range(4):
            status, backend, _ = chat()
            assert status == 200 and backend == "tabbyapi", (status, backend)
        hydra_storage.succeed(f"curl -fsS {coord}/metrics | grep -E '^hydra_backend_up\\{{.*backend=\"ollama\".*\\}} 0'")
        hydra_compute.systemctl("start fake-ollama.service")
        hydra_storage.wait_until_succeeds(
            f"curl -fsS {auth} {coord}/health | jq -e '.backends.ollama == \"healthy\"'", timeout=60
        )

    with subtest("Prometheus scrapes every target"):
        hydra_storage.wait_for_unit("prometheus.service")
        hydra_storage.wait_until_succeeds(
            "curl -fsS http://127.0.0.1:9090/api/v1/targets"
            + " | jq -e '[.data.activeTargets[] | .health] | length > 0 and all(. == \"up\")'",
            timeout=180,
        )
        jobs = json.loads(hydra_storage.succeed("curl -fsS http://127.0.0.1:9090/api/v1/targets"))
        found = {t["labels"]["job"] for t in jobs["data"]["activeTargets"]}
        assert {"node", "postgres", "redis", "hydra-coordinator"} <= found, found

    with subtest("Grafana answers with the dashboard provisioned"):
        hydra_storage.wait_for_unit("grafana.service")
        hydra_storage.wait_for_open_port(3000, "${addresses.hydra-storage}")
        hydra_storage.wait_until_succeeds(
            "curl -fsS -u admin:test-admin 'http://${addresses.hydra-storage}:3000/api/dashboards/uid/hydra-coordinator'"
            + " | jq -e '.dashboard.title == \"Hydra coordinator\"'",
            timeout=60,
        )
        hydra_storage.succeed(
            "curl -fsS -u admin:test-admin http://${addresses.hydra-storage}:3000/api/datasources"
            + " | jq -e 'map(.uid) | index(\"prometheus\") != null and index(\"postgresql\") != null'"
        )
  '';
}
