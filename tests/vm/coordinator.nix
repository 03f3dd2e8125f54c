# The coordinator with a local PostgreSQL and Redis and two fake upstreams:
# routing, /health, /metrics, telemetry rows, a restart, and failover to the
# cloud upstream once the local one is stopped.
{ self, ... }:

{
  name = "coordinator";
  meta.maintainers = [ ];

  nodes.machine = {
    imports = [
      self.nixosModules.coordinator
      ./lib/fake-upstreams.nix
    ];

    services.hydra-coordinator = {
      database.createLocally = true;
      redis.createLocally = true;
    };
  };

  testScript =
    { nodes, ... }:
    builtins.readFile ./lib/helpers.py
    + ''
      start_and_wait()

      with subtest("the config in the store names credentials, never their values"):
          machine.fail("grep -q sk-test-cloud-key ${nodes.machine.services.hydra-coordinator.configFile}")
          machine.succeed("grep -q cloud-key ${nodes.machine.services.hydra-coordinator.configFile}")

      with subtest("health and models"):
          health = json.loads(machine.succeed(f"curl -fsS {COORDINATOR}/health"))
          print(health)
          models = json.loads(machine.succeed(f"curl -fsS {COORDINATOR}/v1/models"))
          ids = {model["id"] for model in models["data"]}
          assert {"llama3", "gpt-4.1-mini"} <= ids, ids

      with subtest("routing by model"):
          _status, headers, _body = chat("local", "Say hello.")
          assert headers["x-hydra-backend"] == "local", headers
          assert "x-hydra-request-id" in headers, headers
          _status, headers, _body = chat("cloud", "Say hello.")
          assert headers["x-hydra-backend"] == "cloud", headers
          _status, headers, _body = chat("gpt-4.1-mini", "Say hello.")
          assert headers["x-hydra-backend"] == "cloud", headers
          _status, headers, _body = chat("auto", "hi")
          assert headers["x-hydra-backend"] == "local", headers
          assert len(upstream_requests(CLOUD)) >= 2

      with subtest("metrics"):
          metrics = machine.succeed(f"curl -fsS {COORDINATOR}/metrics")
          for name in ("hydra_requests_total", "hydra_route_decisions_total", "hydra_backend_up", "hydra_build_info"):
              assert name in metrics, f"{name} missing from /metrics"

      with subtest("telemetry rows in PostgreSQL (peer authentication as hydra-coordinator)"):
          count_rows = "runuser -u postgres -- psql -d hydra-coordinator -tAc 'SELECT COUNT(*) FROM telemetry'"
          machine.wait_until_succeeds(f"test $({count_rows}) -ge 4", timeout=60)
          rows_before_restart = int(machine.succeed(count_rows).strip())

      with subtest("restart"):
          machine.systemctl("restart hydra-coordinator.service")
          machine.wait_for_unit("hydra-coordinator.service")
          machine.wait_for_open_port(8092)
          machine.wait_until_succeeds(f"curl -fsS {COORDINATOR}/health")
          _status, headers, _body = chat("local", "Still there?")
          assert headers["x-hydra-backend"] == "local", headers
          machine.wait_until_succeeds(f"test $({count_rows}) -gt {rows_before_restart}", timeout=60)

      with subtest("failover to the cloud when the local upstream stops"):
          machine.systemctl("stop fake-local.service")
          machine.wait_for_closed_port(11434)
          served_by = ""
          for _ in range(30):
              status, headers, _body = chat("auto", "hi", expect_ok=False)
              served_by = headers.get("x-hydra-backend", "")
              if status == 200 and served_by == "cloud":
                  break
              machine.sleep(1)
          assert served_by == "cloud", f"still not failed over: {status} {headers}"
          machine.wait_until_succeeds(
              f"curl -fsS {COORDINATOR}/metrics | grep -E '^hydra_backend_up[{{].*backend=\"local\".*[}}] 0'",
              timeout=30,
          )

      with subtest("hardening"):
          print(machine.succeed("systemd-analyze security hydra-coordinator.service | tail -n 1"))
    '';
}
