# Offline evaluation of the three lab hosts: units, GPU settings,
# environment, lab-only ports, secrets as credentials.
# Run: lib.runTests (import ./test-lab.nix { inherit lib; }) == [ ]
{ lib }:
let
  eval = host: (import ./lib/eval-host.nix { inherit lib host; }).config;
  ai = eval "hydra-ai";
  compute = eval "hydra-compute";
  storage = eval "hydra-storage";
  failed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  lanRule = ports: "ip saddr { 192.168.50.0/24 } tcp dport { ${lib.concatMapStringsSep ", " toString ports} } accept";
  gpuDevices = [
    "char-nvidiactl"
    "char-nvidia-caps"
    "char-nvidia-frontend"
    "char-nvidia-uvm"
  ];
  hasAll = needles: haystack: lib.all (n: lib.elem n haystack) needles;
  tabby = ai.systemd.services.hydra-tabbyapi;
in
{
  testHostsHaveNoFailedAssertions = {
    expr = map failed [
      ai
      compute
      storage
    ];
    expected = [
      [ ]
      [ ]
      [ ]
    ];
  };

  # --- hydra-ai -----------------------------------------------------------
  testAiNvidiaHeadless = {
    expr = {
      inherit (ai.hardware.nvidia)
        enabled
        open
        nvidiaPersistenced
        nvidiaSettings
        ;
      drivers = ai.services.xserver.videoDrivers;
      version = ai.hardware.nvidia.package.version;
      ctk = ai.hardware.nvidia-container-toolkit.enable;
    };
    expected = {
      enabled = true;
      open = true;
      nvidiaPersistenced = true;
      nvidiaSettings = false;
      drivers = [ "nvidia" ];
      version = "595.84";
      ctk = true;
    };
  };
  testAiPowerLimitsOneshot = {
    expr = {
      inherit (ai.systemd.services.nvidia-power-limits.serviceConfig) Type RemainAfterExit;
      exec = map (lib.removePrefix "${ai.hardware.nvidia.package.bin}/bin/")
        ai.systemd.services.nvidia-power-limits.serviceConfig.ExecStart;
      wantedBy = ai.systemd.services.nvidia-power-limits.wantedBy;
    };
    expected = {
      Type = "oneshot";
      RemainAfterExit = true;
      exec = [
        "nvidia-smi -i 0 -pl 450"
        "nvidia-smi -i 1 -pl 350"
      ];
      wantedBy = [ "multi-user.target" ];
    };
  };
  testAiTabbyUnitGpuAccess = {
    expr = {
      inherit (tabby.serviceConfig) PrivateDevices DevicePolicy DynamicUser;
      devices = hasAll gpuDevices tabby.serviceConfig.DeviceAllow;
      order = tabby.environment.CUDA_DEVICE_ORDER;
      afterLimits = lib.elem "nvidia-power-limits.service" tabby.after;
    };
    expected = {
      PrivateDevices = false;
      DevicePolicy = "closed";
      DynamicUser = true;
      devices = true;
      order = "PCI_BUS_ID";
      afterLimits = true;
    };
  };
  testAiTabbySettings = {
    expr = {
      inherit (ai.hydra.tabbyapi.settings) network;
      inherit (ai.hydra.tabbyapi.settings.model)
        model_dir
        model_name
        gpu_split_auto
        gpu_split
        cache_mode
        max_seq_len
        ;
    };
    expected = {
      network = {
        host = "192.168.50.11";
        port = 5000;
        disable_auth = false;
      };
      model_dir = "/var/lib/hydra-tabbyapi/models";
      model_name = "Qwen3-32B-exl3-6.0bpw";
      gpu_split_auto = false;
      gpu_split = [
        30
        22
      ];
      cache_mode = "8,8";
      max_seq_len = 32768;
    };
  };
  testAiTabbyKeyIsACredential = {
    expr = {
      cred = tabby.serviceConfig.LoadCredential;
      # the key file path never appears in the generated config or script
      inConfig = lib.hasInfix "tabbyapi-api-key" (builtins.toJSON ai.hydra.tabbyapi.settings);
      scriptReadsCredential = lib.hasInfix "$CREDENTIALS_DIRECTORY" (lib.head tabby.serviceConfig.ExecStartPre).text;
    };
    expected = {
      cred = [ "api-key:/run/secrets/hydra/tabbyapi-api-key" ];
      inConfig = false;
      scriptReadsCredential = true;
    };
  };
  # nixpkgs' services.tabbyapi (unit `tabbyapi`) may or may not exist: the
  # host evaluates either way, with its own unit, state and user.
  testAiTabbyWithAndWithoutNixpkgsModule = {
    expr =
      map
        (
          withModule:
          let
            c = (import ./lib/eval-host.nix {
              inherit lib;
              host = "hydra-ai";
              nixpkgsTabbyapi = withModule;
            }).config;
            unit = c.systemd.services.hydra-tabbyapi.serviceConfig;
          in
          {
            failed = failed c;
            nixpkgsUnit = c.systemd.services ? tabbyapi;
            inherit (unit) User StateDirectory CacheDirectory WorkingDirectory;
          }
        )
        [
          true
          false
        ];
    expected =
      let
        ours = {
          failed = [ ];
          nixpkgsUnit = false;
          User = "hydra-tabbyapi";
          StateDirectory = "hydra-tabbyapi";
          CacheDirectory = "hydra-tabbyapi";
          WorkingDirectory = "/var/lib/hydra-tabbyapi";
        };
      in
      [
        ours
        ours
      ];
  };
  # CUDA where it is needed only: TabbyAPI from pkgsCuda, built for the
  # host's cards (nixpkgs.config.cudaCapabilities), no global cudaSupport.
  testAiCudaOnlyForTabbyApi = {
    expr = {
      tabbyCuda = ai.hydra.tabbyapi.package.passthru.cudaSupport;
      inherit (ai.nixpkgs.config) cudaCapabilities allowUnfree;
      globalCuda = ai.nixpkgs.config.cudaSupport or false;
      cards = ai.hydra.gpu.nvidia.cudaCapabilities;
      exec = lib.hasPrefix "${ai.hydra.tabbyapi.package}/" tabby.serviceConfig.ExecStart;
    };
    expected = {
      tabbyCuda = true;
      cudaCapabilities = [
        "12.0"
        "8.9"
      ];
      allowUnfree = true;
      globalCuda = false;
      cards = [
        "12.0"
        "8.9"
      ];
      exec = true;
    };
  };
  testAiPortsLabOnly = {
    expr = {
      world = ai.networking.firewall.allowedTCPPorts;
      rules = ai.networking.firewall.extraInputRules;
      nft = ai.networking.nftables.enable;
    };
    expected = {
      world = [ ];
      rules = lanRule [
        5000
        9100
        9835
      ];
      nft = true;
    };
  };
  testAiStaticAddress = {
    expr = ai.networking.interfaces.enp5s0.ipv4.addresses;
    expected = [
      {
        address = "192.168.50.11";
        prefixLength = 24;
      }
    ];
  };
  # Static addresses come with a default route and DNS (model pulls, cloud
  # backends, NTP).
  testEveryHostHasARouteAndDns = {
    expr = map (c: {
      gateway = {
        inherit (c.networking.defaultGateway) address interface;
      };
      inherit (c.networking) nameservers;
    }) [
      ai
      compute
      storage
    ];
    expected =
      let
        lan = {
          gateway = {
            address = "192.168.50.1";
            interface = "enp5s0";
          };
          nameservers = [ "192.168.50.1" ];
        };
      in
      [
        lan
        lan
        lan
      ];
  };

  # --- hydra-compute ------------------------------------------------------
  testComputeOllama = {
    expr = {
      inherit (compute.services.ollama) host port;
      package = lib.getName compute.services.ollama.package;
      env = compute.services.ollama.environmentVariables;
    };
    expected = {
      host = "192.168.50.12";
      port = 11434;
      package = "ollama-cuda";
      env = {
        OLLAMA_SCHED_SPREAD = "1";
        OLLAMA_NUM_PARALLEL = "4";
        OLLAMA_KEEP_ALIVE = "30m";
        OLLAMA_FLASH_ATTENTION = "1";
        CUDA_VISIBLE_DEVICES = "0,1";
      };
    };
  };
  testComputeCudaCapabilities = {
    expr = {
      inherit (compute.nixpkgs.config) cudaCapabilities;
      globalCuda = compute.nixpkgs.config.cudaSupport or false;
      cards = compute.hydra.gpu.nvidia.cudaCapabilities;
    };
    expected = {
      cudaCapabilities = [ "12.0" ];
      globalCuda = false;
      cards = [ "12.0" ];
    };
  };
  testComputeOllamaUnitGpu = {
    expr = {
      inherit (compute.systemd.services.ollama.serviceConfig) PrivateDevices;
      devices = hasAll gpuDevices compute.systemd.services.ollama.serviceConfig.DeviceAllow;
      order = compute.systemd.services.ollama.environment.CUDA_DEVICE_ORDER;
    };
    expected = {
      PrivateDevices = false;
      devices = true;
      order = "PCI_BUS_ID";
    };
  };
  testComputeOpenWebuiUsesCoordinator = {
    expr = compute.services.open-webui.environment;
    expected = {
      ANONYMIZED_TELEMETRY = "False";
      DO_NOT_TRACK = "True";
      SCARF_NO_ANALYTICS = "True";
      OPENAI_API_BASE_URL = "http://192.168.50.10:8092/v1";
      ENABLE_OLLAMA_API = "False";
    };
  };
  testComputePortsLabOnly = {
    expr = [
      compute.networking.firewall.allowedTCPPorts
      compute.networking.firewall.extraInputRules
    ];
    expected = [
      [ ]
      (lanRule [
        8080
        9100
        9835
        11434
      ])
    ];
  };
  testComputeGpuContainersUseCdi = {
    expr =
      let
        c =
          (import ./lib/eval-host.nix {
            inherit lib;
            host = "hydra-compute";
            modules = [
              {
                hydra.roles.compute.gpuContainers.speaches = {
                  image = "ghcr.io/speaches-ai/speaches:latest-cuda";
                  ports = [ 8000 ];
                };
              }
            ];
          }).config;
      in
      {
        inherit (c.virtualisation.oci-containers.containers.speaches) devices ports;
        lab = lib.hasInfix "8000" c.networking.firewall.extraInputRules;
        world = c.networking.firewall.allowedTCPPorts;
      };
    expected = {
      devices = [ "nvidia.com/gpu=all" ];
      ports = [ "192.168.50.12:8000:8000" ];
      lab = true;
      world = [ ];
    };
  };

  # --- hydra-storage ------------------------------------------------------
  testStorageCoordinatorBackendsFromTopology = {
    expr = map (b: { inherit (b) name base_url api_key_file; }) storage.services.hydra-coordinator.settings.backends;
    expected = [
      {
        name = "tabbyapi";
        base_url = "http://192.168.50.11:5000/v1";
        api_key_file = "tabbyapi-api-key";
      }
      {
        name = "ollama";
        base_url = "http://192.168.50.12:11434/v1";
        api_key_file = null;
      }
    ];
  };
  # The coordinator's config (coordinator/hydra_coordinator/config.py)
  # rejects unknown keys; database/redis/qdrant are the keys
  # modules/coordinator.nix manages for the stores work.
  testStorageCoordinatorConfigKeysAreKnown = {
    expr =
      let
        json = storage.services.hydra-coordinator.settings;
        unknown = known: attrs: lib.subtractLists known (lib.attrNames attrs);
      in
      {
        top = unknown [
          "listen"
          "backends"
          "routing"
          "auth"
          "limits"
          "health"
          "upstream"
          "log"
          "database"
          "redis"
          "qdrant"
          "embeddings"
        ] json;
        backends = lib.concatMap (unknown [
          "name"
          "kind"
          "base_url"
          "api_key_file"
          "models"
          "price_per_mtok"
          "max_concurrency"
          "max_queue"
          "timeout_s"
          "connect_timeout_s"
          "context_window"
        ]) json.backends;
        kinds = map (b: b.kind) json.backends;
        inherit (json) listen;
        stores = {
          database = json.database.url;
          redis = json.redis.url;
          qdrant = json.qdrant.url;
        };
      };
    expected = {
      top = [ ];
      backends = [ ];
      kinds = [
        "local"
        "local"
      ];
      listen = {
        host = "192.168.50.10";
        port = 8092;
      };
      stores = {
        database = "postgresql:///hydra-coordinator?host=/run/postgresql";
        redis = "redis://127.0.0.1:6379/0";
        qdrant = "http://192.168.50.10:6333";
      };
    };
  };
  testStorageCoordinatorSecretsAreCredentials = {
    expr = {
      creds = lib.sort lib.lessThan storage.systemd.services.hydra-coordinator.serviceConfig.LoadCredential;
      auth = storage.services.hydra-coordinator.settings.auth.api_key_files;
      listen = storage.services.hydra-coordinator.listen;
      noSecretPathsInSettings = !(lib.hasInfix "/run/secrets" (builtins.toJSON storage.services.hydra-coordinator.settings));
    };
    expected = {
      creds = [
        "client-api-keys:/run/secrets/hydra/coordinator-api-keys"
        "qdrant-api-key:/run/secrets/hydra/qdrant-api-key"
        "tabbyapi-api-key:/run/secrets/hydra/tabbyapi-api-key"
      ];
      auth = [ "client-api-keys" ];
      listen = {
        address = "192.168.50.10";
        port = 8092;
      };
      noSecretPathsInSettings = true;
    };
  };
  testStorageDataServices = {
    expr = {
      pg = storage.services.postgresql.enable;
      pgAuth = storage.services.postgresql.authentication;
      redis = {
        inherit (storage.services.redis.servers.hydra) enable port bind;
      };
      qdrant = {
        inherit (storage.services.qdrant.settings.service) host http_port grpc_port;
      };
      coordinatorDeps = {
        inherit (storage.services.hydra-coordinator.settings) redis embeddings;
        qdrant = storage.services.hydra-coordinator.qdrant.url;
      };
    };
    expected = {
      pg = true;
      pgAuth = "host all all 192.168.50.0/24 scram-sha-256\n";
      redis = {
        enable = true;
        port = 6379;
        bind = "127.0.0.1";
      };
      qdrant = {
        host = "192.168.50.10";
        http_port = 6333;
        grpc_port = 6334;
      };
      coordinatorDeps = {
        redis.url = "redis://127.0.0.1:6379/0";
        embeddings = {
          url = "http://127.0.0.1:8081/v1";
          model = "nomic-embed-text";
        };
        qdrant = "http://192.168.50.10:6333";
      };
    };
  };
  # The embeddings service: a CPU-only Ollama on the storage node, on
  # loopback because the coordinator runs there too.
  testStorageEmbeddingsService = {
    expr = {
      inherit (storage.services.ollama) enable host port loadModels;
      package = lib.getName storage.services.ollama.package;
      keepAlive = storage.services.ollama.environmentVariables.OLLAMA_KEEP_ALIVE;
      privateDevices = storage.systemd.services.ollama.serviceConfig.PrivateDevices;
      loader = storage.systemd.services ? ollama-model-loader;
      coordinatorAfterOllama = lib.elem "ollama.service" storage.systemd.services.hydra-coordinator.after;
      labPort = lib.hasInfix "8081" storage.networking.firewall.extraInputRules;
    };
    expected = {
      enable = true;
      host = "127.0.0.1";
      port = 8081;
      loadModels = [ "nomic-embed-text" ];
      package = "ollama-cpu";
      keepAlive = "-1";
      privateDevices = true;
      loader = true;
      coordinatorAfterOllama = true;
      labPort = false;
    };
  };
  testEmbeddingsOnTheComputeNode = {
    expr =
      let
        with' = host: (import ./lib/eval-host.nix {
          inherit lib host;
          modules = [ { hydra.lab.embeddings.provider = "compute"; } ];
        }).config;
        s = with' "hydra-storage";
        c = with' "hydra-compute";
      in
      {
        storageOllama = s.services.ollama.enable;
        inherit (s.services.hydra-coordinator.settings) embeddings;
        computeModels = c.services.ollama.loadModels;
      };
    expected = {
      storageOllama = false;
      embeddings = {
        url = "http://192.168.50.12:11434/v1";
        model = "nomic-embed-text";
      };
      computeModels = [
        "qwen3:14b"
        "gemma3:12b"
        "nomic-embed-text"
      ];
    };
  };
  # With the coordinator on another node, the storage node's Ollama listens
  # on its lab address (lab-only port) and the coordinator uses that.
  testEmbeddingsWhenTheCoordinatorRunsElsewhere = {
    expr =
      let
        with' = host: (import ./lib/eval-host.nix {
          inherit lib host;
          modules = [ { hydra.lab.coordinatorNode = lib.mkForce "hydra-compute"; } ];
        }).config;
        s = with' "hydra-storage";
        c = with' "hydra-compute";
      in
      {
        inherit (s.services.ollama) host;
        labPort = lib.hasInfix "8081" s.networking.firewall.extraInputRules;
        url = c.services.hydra-coordinator.settings.embeddings.url;
      };
    expected = {
      host = "192.168.50.10";
      labPort = true;
      url = "http://192.168.50.10:8081/v1";
    };
  };
  testEmbeddingsNone = {
    expr =
      let
        s = (import ./lib/eval-host.nix {
          inherit lib;
          host = "hydra-storage";
          modules = [ { hydra.lab.embeddings.provider = "none"; } ];
        }).config;
      in
      {
        ollama = s.services.ollama.enable;
        key = s.services.hydra-coordinator.settings ? embeddings;
      };
    expected = {
      ollama = false;
      key = false;
    };
  };
  # The option the storage role had before (tests/vm/lab.nix sets it).
  testOldEmbeddingsProviderOptionMaps = {
    expr =
      map
        (
          old:
          (import ./lib/eval-host.nix {
            inherit lib;
            host = "hydra-storage";
            modules = [ { hydra.roles.storage.embeddings.provider = old; } ];
          }).config.hydra.lab.embeddings.provider
        )
        [
          "none"
          "ollama"
          "text-embeddings-inference"
        ];
    expected = [
      "none"
      "compute"
      "storage"
    ];
  };
  # nixpkgs' qdrant module sets service.{host,http_port,grpc_port} with
  # mkDefault: the lab's values must win over those, and yours over the lab's.
  testStorageQdrantOverridesNixpkgsDefaults = {
    expr =
      let
        moved = (import ./lib/eval-host.nix {
          inherit lib;
          host = "hydra-storage";
          modules = [ { hydra.lab.ports.qdrantHttp = 7333; } ];
        }).config;
        mine = (import ./lib/eval-host.nix {
          inherit lib;
          host = "hydra-storage";
          modules = [ { services.qdrant.settings.service.host = "127.0.0.1"; } ];
        }).config;
      in
      {
        port = moved.services.qdrant.settings.service.http_port;
        host = mine.services.qdrant.settings.service.host;
        # the rest of nixpkgs' defaults stay
        telemetry = storage.services.qdrant.settings.telemetry_disabled;
      };
    expected = {
      port = 7333;
      host = "127.0.0.1";
      telemetry = true;
    };
  };
  # Qdrant listens on the lab network: it requires an API key, which comes
  # from a credential (never the store) to Qdrant and to the coordinator.
  testStorageQdrantRequiresAnApiKey = {
    expr =
      let
        q = storage.systemd.services.qdrant;
        wrapper = storage.services.qdrant.package;
      in
      {
        inherit (q.serviceConfig) LoadCredential;
        # nixpkgs' unit runs bin/qdrant of services.qdrant.package: the wrapper
        runsWrapper = lib.hasPrefix "${wrapper}/bin/qdrant --config-path " q.serviceConfig.ExecStart;
        exportsKey = lib.hasInfix "export QDRANT__SERVICE__API_KEY" wrapper.text;
        execsQdrant = lib.hasInfix "exec ${storage.hydra.roles.storage.qdrant.package}/bin/qdrant \"$@\"" wrapper.text;
        noKeyInConfig = !(lib.hasInfix "api_key" (builtins.toJSON storage.services.qdrant.settings));
        coordinator = storage.services.hydra-coordinator.settings.qdrant;
        coordinatorCredential = storage.services.hydra-coordinator.credentials.qdrant-api-key;
      };
    expected = {
      LoadCredential = [ "api-key:/run/secrets/hydra/qdrant-api-key" ];
      runsWrapper = true;
      exportsKey = true;
      execsQdrant = true;
      noKeyInConfig = true;
      coordinator = {
        url = "http://192.168.50.10:6333";
        api_key_file = "qdrant-api-key";
      };
      coordinatorCredential = "/run/secrets/hydra/qdrant-api-key";
    };
  };
  # The coordinator uses the storage role's Redis: it starts after it.
  testStorageCoordinatorAfterRedis = {
    expr =
      let
        c = storage.systemd.services.hydra-coordinator;
      in
      {
        after = lib.elem "redis-hydra.service" c.after;
        wants = lib.elem "redis-hydra.service" c.wants;
        # not required: the coordinator falls back while Redis is away
        requires = lib.elem "redis-hydra.service" c.requires;
        unit = storage.systemd.services ? redis-hydra;
      };
    expected = {
      after = true;
      wants = true;
      requires = false;
      unit = true;
    };
  };
  testStorageRetentionTimer = {
    expr =
      let
        s = storage.systemd.services.hydra-telemetry-retention;
      in
      {
        inherit (s) startAt after requires;
        inherit (s.serviceConfig) User Type;
        deletes = lib.hasInfix ''DELETE FROM public."telemetry"'' s.script;
        window = lib.hasInfix "WHERE \"timestamp\" < now() - interval '90 days'" s.script;
        database = lib.hasInfix "--dbname=hydra-coordinator" s.script;
        # postgresql.target exists and waits for the setup (ensureDatabases)
        target = storage.systemd.targets.postgresql.requires;
      };
    expected = {
      startAt = "daily";
      after = [ "postgresql.target" ];
      requires = [ "postgresql.target" ];
      User = "postgres";
      Type = "oneshot";
      deletes = true;
      window = true;
      database = true;
      target = [
        "postgresql.service"
        "postgresql-setup.service"
      ];
    };
  };
  # Grafana's PostgreSQL datasource user may read the coordinator's tables,
  # present and future.
  testStorageGrafanaCanReadTheCoordinatorsTables = {
    expr =
      let
        g = storage.systemd.services.hydra-grafana-db-grants;
      in
      {
        inherit (g) after requires before wantedBy;
        inherit (g.serviceConfig) User Type RemainAfterExit;
        database = lib.hasInfix "--dbname=hydra-coordinator" g.script;
        existing = lib.hasInfix "GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana;" g.script;
        future = lib.hasInfix ''ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT ON TABLES TO grafana;'' g.script;
        user = storage.services.postgresql.ensureUsers;
      };
    expected = {
      after = [ "postgresql.target" ];
      requires = [ "postgresql.target" ];
      before = [
        "grafana.service"
        "hydra-coordinator.service"
      ];
      wantedBy = [ "multi-user.target" ];
      User = "postgres";
      Type = "oneshot";
      RemainAfterExit = true;
      database = true;
      existing = true;
      future = true;
      user = [
        {
          name = "grafana";
          ensureDBOwnership = false;
          ensureClauses = { };
        }
        {
          name = "hydra-coordinator";
          ensureDBOwnership = true;
          ensureClauses = { };
        }
      ];
    };
  };
  testStoragePrometheusTargets = {
    expr = map (j: {
      inherit (j) job_name;
      targets = lib.concatMap (s: s.targets) j.static_configs;
    }) storage.services.prometheus.scrapeConfigs;
    expected = [
      {
        job_name = "node";
        targets = [
          "192.168.50.11:9100"
          "192.168.50.12:9100"
          "192.168.50.10:9100"
        ];
      }
      {
        job_name = "nvidia_gpu";
        targets = [
          "192.168.50.11:9835"
          "192.168.50.12:9835"
        ];
      }
      {
        job_name = "postgres";
        targets = [ "192.168.50.10:9187" ];
      }
      {
        job_name = "redis";
        targets = [ "192.168.50.10:9121" ];
      }
      {
        job_name = "hydra-coordinator";
        targets = [ "192.168.50.10:8092" ];
      }
    ];
  };
  testStorageGrafanaSecretsFromFiles = {
    expr = {
      inherit (storage.services.grafana.settings) security;
      creds = storage.systemd.services.grafana.serviceConfig.LoadCredential;
      datasources = map (d: d.type) storage.services.grafana.provision.datasources.settings.datasources;
      dashboards = builtins.pathExists (
        (lib.head storage.services.grafana.provision.dashboards.settings.providers).options.path
        + "/coordinator.json"
      );
    };
    expected = {
      security = {
        secret_key = "$__file{/run/credentials/grafana.service/secret_key}";
        admin_password = "$__file{/run/credentials/grafana.service/admin_password}";
      };
      creds = [
        "secret_key:/run/secrets/hydra/grafana-secret-key"
        "admin_password:/run/secrets/hydra/grafana-admin-password"
      ];
      datasources = [
        "prometheus"
        "grafana-postgresql-datasource"
      ];
      dashboards = true;
    };
  };
  testStorageJellyfinArcQsv = {
    expr = {
      inherit (storage.services.jellyfin.hardwareAcceleration) enable type device;
      env = storage.systemd.services.jellyfin.environment.LIBVA_DRIVER_NAME;
      groups = storage.systemd.services.jellyfin.serviceConfig.SupplementaryGroups;
      # the transcoding settings reach encoding.xml on every start, not only
      # the first
      inherit (storage.services.jellyfin) forceEncodingConfig;
      rewritesEncodingXml = lib.hasInfix "encoding.xml.backup-" storage.systemd.services.jellyfin.preStart;
      drivers = map lib.getName storage.hardware.graphics.extraPackages;
      nvidia = storage.hardware.nvidia.enabled;
    };
    expected = {
      enable = true;
      type = "qsv";
      device = "/dev/dri/renderD128";
      env = "iHD";
      groups = [ "render" ];
      forceEncodingConfig = true;
      rewritesEncodingXml = true;
      drivers = [
        "intel-media-driver"
        "vpl-gpu-rt"
        "intel-compute-runtime"
      ];
      nvidia = false;
    };
  };
  testStoragePortsLabOnly = {
    expr = [
      storage.networking.firewall.allowedTCPPorts
      storage.networking.firewall.extraInputRules
    ];
    expected = [
      [ ]
      (lanRule [
        3000
        5432
        6333
        6334
        8092
        8096
        9090
        9100
        9121
        9187
      ])
    ];
  };
  testStorageOptionalContainersOffByDefault = {
    expr = storage.virtualisation.oci-containers.containers;
    expected = { };
  };
  testStorageAlertRulesLoaded = {
    expr = map baseNameOf (map toString storage.services.prometheus.ruleFiles);
    expected = [ "alerts.yml" ];
  };
}
