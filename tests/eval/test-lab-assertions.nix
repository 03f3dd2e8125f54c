# The lab's assertions fire, with messages that say what to change.
{ lib }:
let
  evalWith =
    host: modules:
    (import ./lib/eval-host.nix {
      inherit lib host;
      modules = lib.toList modules;
    }).config;
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  # true when exactly one failed assertion mentions every given fragment
  firesWith =
    fragments: c:
    lib.length (lib.filter (m: lib.all (f: lib.hasInfix f m) fragments) (failed c)) == 1;
in
{
  testTabbyApiWithoutNvidiaDriver = {
    expr = firesWith [
      "hydra.tabbyapi needs the NVIDIA driver"
      "hydra.gpu.nvidia.enable"
    ] (evalWith "hydra-ai" { hydra.gpu.nvidia.enable = lib.mkForce false; });
    expected = true;
  };

  testBackendOnNodeWithoutThatService = {
    expr =
      firesWith
        [
          ''backend "tabby2" points at http://192.168.50.12:5000/v1''
          "TabbyAPI on lab node hydra-compute"
          "which does not run TabbyAPI (its roles: compute)"
          "hydra.lab.nodes.hydra-compute.roles"
        ]
        (evalWith "hydra-storage" {
          services.hydra-coordinator.settings.backends = lib.mkForce [
            {
              name = "tabby2";
              kind = "local";
              base_url = "http://192.168.50.12:5000/v1";
            }
          ];
        });
    expected = true;
  };

  testBackendOnUnknownPortOfLabNode = {
    expr = firesWith [ "port 9999" "neither TabbyAPI" ] (
      evalWith "hydra-storage" {
        services.hydra-coordinator.settings.backends = lib.mkForce [
          {
            name = "x";
            kind = "local";
            base_url = "http://192.168.50.11:9999/v1";
          }
        ];
      }
    );
    expected = true;
  };

  testCloudBackendIsNotALabProblem = {
    expr = failed (
      evalWith "hydra-storage" {
        services.hydra-coordinator.credentials.openai-key = "/run/secrets/openai";
        services.hydra-coordinator.settings.backends = lib.mkForce [
          {
            name = "openai";
            kind = "cloud";
            base_url = "https://api.openai.com/v1";
            api_key_file = "openai-key";
          }
        ];
      }
    );
    expected = [ ];
  };

  testBackendKeyMustBeACredential = {
    expr = firesWith [ ''api_key_file = "/run/secrets/openai" is a path'' "credentials." ] (
      evalWith "hydra-storage" {
        services.hydra-coordinator.settings.backends = lib.mkForce [
          {
            name = "openai";
            kind = "cloud";
            base_url = "https://api.openai.com/v1";
            api_key_file = "/run/secrets/openai";
          }
        ];
      }
    );
    expected = true;
  };

  # reported by modules/coordinator.nix (the lab module does not repeat it)
  testBackendKeyNamesAMissingCredential = {
    expr = firesWith [
      "refers to credentials that are not declared"
      ''(backend "openai").api_key_file = "nope"''
    ] (
      evalWith "hydra-storage" {
        services.hydra-coordinator.settings.backends = lib.mkForce [
          {
            name = "openai";
            kind = "cloud";
            base_url = "https://api.openai.com/v1";
            api_key_file = "nope";
          }
        ];
      }
    );
    expected = true;
  };

  # modules/coordinator.nix: the lab listens on the LAN address, so clients
  # must authenticate.
  testCoordinatorOnLanNeedsClientKeys = {
    expr = firesWith [
      ''listen.address = "192.168.50.10" is not a loopback''
      "api_key_files is empty"
    ] (evalWith "hydra-storage" { services.hydra-coordinator.settings.auth.api_key_files = lib.mkForce [ ]; });
    expected = true;
  };

  testLabPortOpenedToTheWorld = {
    expr = firesWith [ "TCP ports 5432 are lab-only" "networking.firewall.allowedTCPPorts" ] (
      evalWith "hydra-storage" { networking.firewall.allowedTCPPorts = [ 5432 ]; }
    );
    expected = true;
  };

  testNftablesRequired = {
    expr = firesWith [ "networking.nftables.enable = true" ] (
      evalWith "hydra-ai" { networking.nftables.enable = lib.mkForce false; }
    );
    expected = true;
  };

  testEmptyLanCidrs = {
    expr = firesWith [ "hydra.lab.lanCidrs is empty" ] (
      evalWith "hydra-ai" { hydra.lab.lanCidrs = lib.mkForce [ ]; }
    );
    expected = true;
  };

  testHostMissingFromTopology = {
    expr = firesWith [ ''this host is "hydra-new"'' "hydra.lab.nodes only has" ] (
      evalWith "hydra-ai" { networking.hostName = lib.mkForce "hydra-new"; }
    );
    expected = true;
  };

  testStaticAddressNeedsAGateway = {
    expr = firesWith [
      "hydra-compute has the static address 192.168.50.12/24 on enp5s0"
      "hydra.lab.gateway is null"
      "set the interface to null to use DHCP"
    ] (evalWith "hydra-compute" { hydra.lab.gateway = lib.mkForce null; });
    expected = true;
  };

  testStaticAddressNeedsNameservers = {
    expr = firesWith [ "hydra.lab.nameservers is empty" ] (
      evalWith "hydra-ai" { hydra.lab.nameservers = lib.mkForce [ ]; }
    );
    expected = true;
  };

  testGatewayOnTheLink = {
    expr = map (gw: firesWith [ ''hydra.lab.gateway = "${gw}" is not an IPv4 address in the network'' ] (
      evalWith "hydra-ai" { hydra.lab.gateway = lib.mkForce gw; }
    )) [
      "192.168.51.1"
      "router.lan"
    ];
    expected = [
      true
      true
    ];
  };

  testGatewayIsNotANode = {
    expr = firesWith [ ''hydra.lab.gateway = "192.168.50.10" is the address of a lab node'' ] (
      evalWith "hydra-ai" { hydra.lab.gateway = lib.mkForce "192.168.50.10"; }
    );
    expected = true;
  };

  # DHCP nodes get route and DNS from DHCP.
  testDhcpNodeNeedsNoGateway = {
    expr =
      let
        c = evalWith "hydra-ai" {
          hydra.lab.nodes.hydra-ai.interface = lib.mkForce null;
          hydra.lab.gateway = lib.mkForce null;
          hydra.lab.nameservers = lib.mkForce [ ];
        };
      in
      {
        failed = failed c;
        gateway = c.networking.defaultGateway;
      };
    expected = {
      failed = [ ];
      gateway = null;
    };
  };

  testOldDriverRejected = {
    expr = firesWith [ "driver 535.288.01 is older than 570" ] (
      evalWith "hydra-ai" (
        { config, ... }:
        {
          hardware.nvidia.package = lib.mkForce config.boot.kernelPackages.nvidiaPackages.legacy_535;
        }
      )
    );
    expected = true;
  };

  testBlackwellNeedsOpenModule = {
    expr = firesWith [ "RTX 5090 (Blackwell) only work with the open kernel module" ] (
      evalWith "hydra-ai" { hardware.nvidia.open = lib.mkForce false; }
    );
    expected = true;
  };

  testTabbyApiAuthOffOnLan = {
    expr = firesWith [ "disable_auth = true while listening on" ] (
      evalWith "hydra-ai" { hydra.tabbyapi.settings.network.disable_auth = true; }
    );
    expected = true;
  };

  testTabbyApiManualSplitNeedsSizes = {
    expr = firesWith [ "gpu_split_auto = false needs model.gpu_split" ] (
      evalWith "hydra-ai" { hydra.tabbyapi.settings.model.gpu_split = lib.mkForce [ ]; }
    );
    expected = true;
  };

  testEmbeddingsProviderWithoutThatRole = {
    expr = firesWith [ ''hydra.lab.embeddings.provider = "compute" but no node'' ''provider = "none"'' ] (
      evalWith "hydra-storage" {
        hydra.lab.embeddings.provider = "compute";
        hydra.lab.nodes.hydra-compute.roles = lib.mkForce [ ];
      }
    );
    expected = true;
  };

  testBothTabbyApiModulesRefused = {
    expr = firesWith [ "Both hydra.tabbyapi and nixpkgs' services.tabbyapi are enabled" ] (
      evalWith "hydra-ai" { services.tabbyapi.enable = true; }
    );
    expected = true;
  };

  testTabbyApiPackageWithoutCuda = {
    expr = firesWith [ "is built without CUDA" "pkgs.pkgsCuda.tabbyapi" ] (
      evalWith "hydra-ai" ({ pkgs, ... }: { hydra.tabbyapi.package = pkgs.tabbyapi; })
    );
    expected = true;
  };

  # TabbyAPI's config model refuses other cache modes at start: here it is an
  # evaluation error naming the option.
  testTabbyApiCacheModeChecked = {
    expr =
      let
        valueOf =
          mode:
          builtins.tryEval (
            (evalWith "hydra-ai" { hydra.roles.ai.model.cacheMode = mode; }).hydra.tabbyapi.settings.model.cache_mode
          );
      in
      map (m: (valueOf m).success) [
        "8,8"
        "4, 6"
        "Q6"
        "FP16"
        "Q5"
        "9,9"
        "8"
      ];
    expected = [
      true
      true
      true
      true
      false
      false
      false
    ];
  };

  # A third card (an RTX 3090, 8.6) that the host's
  # nixpkgs.config.cudaCapabilities = [ "12.0" "8.9" ] does not build for.
  testCudaCapabilitiesMustCoverTheCards = {
    expr =
      firesWith
        [
          "builds no CUDA code for 8.6"
          ''nixpkgs.config.cudaCapabilities = [ "8.6" "12.0" "8.9" ];''
        ]
        (
          evalWith "hydra-ai" {
            hydra.gpu.nvidia.gpus = [
              {
                name = "RTX 3090";
                architecture = "ampere";
                memoryGiB = 24;
              }
            ];
          }
        );
    expected = true;
  };

  # Secret files are absolute paths outside the store: a store path or a
  # path literal (which Nix copies into the store) is an evaluation error.
  testSecretFilesRejectStorePaths = {
    expr =
      let
        accepts =
          host: module: get:
          (builtins.tryEval (builtins.deepSeq (get (evalWith host module)) true)).success;
        inStore = "${builtins.storeDir}/0000000000000000000000000000000a-key";
      in
      {
        qdrant = accepts "hydra-storage" { hydra.lab.secrets.qdrantApiKeyFile = inStore; } (
          c: c.hydra.lab.secrets.qdrantApiKeyFile
        );
        tabbyLab = accepts "hydra-ai" { hydra.lab.secrets.tabbyapiApiKeyFile = inStore; } (
          c: c.hydra.lab.secrets.tabbyapiApiKeyFile
        );
        tabbyKey = accepts "hydra-ai" { hydra.tabbyapi.apiKeyFile = lib.mkForce inStore; } (
          c: c.hydra.tabbyapi.apiKeyFile
        );
        tabbyAdminLiteral = accepts "hydra-ai" { hydra.tabbyapi.adminKeyFile = ./test-lab.nix; } (
          c: c.hydra.tabbyapi.adminKeyFile
        );
        grafana = accepts "hydra-storage" { hydra.monitoring.grafana.secretKeyFile = inStore; } (
          c: c.hydra.monitoring.grafana.secretKeyFile
        );
        openWebui = accepts "hydra-compute" { hydra.roles.compute.openWebui.environmentFile = lib.mkForce inStore; } (
          c: c.hydra.roles.compute.openWebui.environmentFile
        );
        relative = accepts "hydra-storage" { hydra.lab.secrets.qdrantApiKeyFile = "secrets/qdrant"; } (
          c: c.hydra.lab.secrets.qdrantApiKeyFile
        );
        fine = accepts "hydra-storage" { hydra.lab.secrets.qdrantApiKeyFile = "/run/agenix/qdrant"; } (
          c: c.hydra.lab.secrets.qdrantApiKeyFile
        );
      };
    expected = {
      qdrant = false;
      tabbyLab = false;
      tabbyKey = false;
      tabbyAdminLiteral = false;
      grafana = false;
      openWebui = false;
      relative = false;
      fine = true;
    };
  };

  testMindsdbNeedsEnvironmentFile = {
    expr = firesWith [ "mindsdb needs environmentFile" ] (
      evalWith "hydra-storage" { hydra.roles.storage.mindsdb.enable = true; }
    );
    expected = true;
  };

  testLettaWiredToPostgres = {
    expr =
      let
        c = evalWith "hydra-storage" {
          hydra.roles.storage.letta = {
            enable = true;
            environmentFile = "/run/secrets/hydra/letta.env";
          };
        };
      in
      {
        failed = failed c;
        dbs = c.services.postgresql.ensureDatabases;
        users = map (u: u.name) c.services.postgresql.ensureUsers;
        net = c.virtualisation.oci-containers.containers.letta.extraOptions;
        env = c.virtualisation.oci-containers.containers.letta.environmentFiles;
        # pgvector is created by the superuser before Letta starts
        vector = {
          inherit (c.systemd.services.hydra-letta-pgvector) after requires;
          inherit (c.systemd.services.hydra-letta-pgvector.serviceConfig) User;
          sql = lib.hasInfix "CREATE EXTENSION IF NOT EXISTS vector;" c.systemd.services.hydra-letta-pgvector.script;
          db = lib.hasInfix "--dbname=letta" c.systemd.services.hydra-letta-pgvector.script;
        };
        container = {
          inherit (c.systemd.services.podman-letta) after requires;
        };
        superuser = lib.any (u: u.ensureClauses.superuser or false) c.services.postgresql.ensureUsers;
      };
    expected = {
      failed = [ ];
      # hydra-coordinator: the coordinator runs on the storage node with
      # services.hydra-coordinator.database.createLocally.
      dbs = [
        "letta"
        "hydra-coordinator"
      ];
      users = [
        "grafana"
        "letta"
        "hydra-coordinator"
      ];
      net = [ "--network=host" ];
      env = [ "/run/secrets/hydra/letta.env" ];
      vector = {
        after = [ "postgresql.target" ];
        requires = [ "postgresql.target" ];
        User = "postgres";
        sql = true;
        db = true;
      };
      container = {
        after = [ "hydra-letta-pgvector.service" ];
        requires = [ "hydra-letta-pgvector.service" ];
      };
      superuser = false;
    };
  };

  testFakeGpuServersReplaceTheRealOnes = {
    expr =
      let
        # The script lives in coordinator/ (another branch until merged):
        # a string path keeps it out of the store here.
        fake = {
          hydra.lab.fakeGpuServers = true;
          hydra.lab.fakeServer.script = "/src/coordinator/tests/fakes/fake_openai.py";
        };
        c = evalWith "hydra-ai" fake;
        cc = evalWith "hydra-compute" fake;
      in
      {
        failed = failed c ++ failed cc;
        tabby = c.hydra.tabbyapi.enable;
        nvidia = c.hydra.gpu.nvidia.enable;
        ai = lib.attrNames c.systemd.services;
        compute = lib.attrNames cc.systemd.services;
        exec = lib.hasInfix "--host 192.168.50.11 --port 5000 --name tabbyapi" c.systemd.services.fake-tabbyapi.serviceConfig.ExecStart;
      };
    expected = {
      failed = [ ];
      tabby = false;
      nvidia = false;
      ai = [ "fake-tabbyapi" ];
      compute = [
        "fake-ollama"
        "open-webui"
      ];
      exec = true;
    };
  };
}
