# Offline evaluation tests of modules/coordinator.nix: lib.evalModules with
# the typed NixOS stand-ins (lib/stubs.nix) and the fake package set
# (lib/fake-pkgs.nix). Run by tests/eval/run; returns lib.runTests cases.
{ lib }:

let
  fakePkgs = import ./lib/fake-pkgs.nix { inherit lib; };

  evalWith =
    pkgs: modules:
    (lib.evalModules {
      modules = [
        ./lib/stubs.nix
        ../../modules/coordinator.nix
        { _module.args.pkgs = pkgs; }
      ]
      ++ modules;
    }).config;

  eval = evalWith fakePkgs;

  ollama = {
    name = "ollama";
    kind = "local";
    base_url = "http://127.0.0.1:11434/v1";
  };
  openai = {
    name = "openai";
    kind = "cloud";
    base_url = "https://api.openai.com/v1";
    api_key_file = "openai-key";
    models = [ "gpt-4.1-mini" ];
  };

  enabled = {
    services.hydra-coordinator = {
      enable = true;
      settings.backends = [ ollama ];
    };
  };

  # The full lab shape: cloud key and client keys as credentials, both stores.
  full = {
    services.hydra-coordinator = {
      enable = true;
      listen.address = "0.0.0.0";
      openFirewall = true;
      credentials = {
        openai-key = "/run/secrets/openai";
        client-keys = "/run/agenix/hydra-client-keys";
      };
      settings = {
        backends = [
          ollama
          openai
        ];
        auth.api_key_files = [ "client-keys" ];
        routing.threshold = 0.5;
      };
      database.createLocally = true;
      redis.createLocally = true;
      qdrant.url = "http://127.0.0.1:6333";
    };
    services.qdrant.enable = true;
  };

  unitOf = config: config.systemd.services.hydra-coordinator;
  serviceOf = config: (unitOf config).serviceConfig;

  # The JSON the module hands to the check and to the service.
  renderedOf =
    config:
    let
      generated = (fakePkgs.formats.json { }).generate "hydra-coordinator.json" config.services.hydra-coordinator.settings;
    in
    generated.text;

  failedAssertions =
    config: map (assertion: assertion.message) (lib.filter (assertion: !assertion.assertion) config.assertions);

  # True when exactly one assertion fails and its message names every needle.
  failsWith =
    needles: config:
    let
      failed = failedAssertions config;
    in
    lib.length failed == 1 && lib.all (needle: lib.hasInfix needle (lib.head failed)) needles;

  # Whether evaluating the unit (and so every option it reads) throws.
  evalFails = config: !(builtins.tryEval (builtins.deepSeq (unitOf config) true)).success;
in
{
  testDisabledDefinesNothing = {
    expr =
      let
        config = eval [ ];
      in
      {
        services = config.systemd.services;
        assertions = config.assertions;
        ports = config.networking.firewall.allowedTCPPorts;
        postgresql = config.services.postgresql.enable;
        redis = config.services.redis.servers;
      };
    expected = {
      services = { };
      assertions = [ ];
      ports = [ ];
      postgresql = false;
      redis = { };
    };
  };

  testMinimalConfigPassesAssertions = {
    expr = failedAssertions (eval [ enabled ]) ++ (eval [ enabled ]).warnings;
    expected = [ ];
  };

  testFullConfigPassesAssertions = {
    expr = failedAssertions (eval [ full ]) ++ (eval [ full ]).warnings;
    expected = [ ];
  };

  testRenderedDefaultSettings = {
    expr = builtins.fromJSON (renderedOf (eval [ enabled ]));
    expected = {
      auth.api_key_files = [ ];
      backends = [ (ollama // { api_key_file = null; }) ];
      listen = {
        host = "127.0.0.1";
        port = 8092;
      };
    };
  };

  testRenderedFullSettings = {
    expr = builtins.fromJSON (renderedOf (eval [ full ]));
    expected = {
      auth.api_key_files = [ "client-keys" ];
      backends = [
        (ollama // { api_key_file = null; })
        openai
      ];
      listen = {
        host = "0.0.0.0";
        port = 8092;
      };
      routing.threshold = 0.5;
      database.url = "postgresql:///hydra-coordinator?host=/run/postgresql";
      redis.url = "unix:///run/redis-hydra-coordinator/redis.sock";
      qdrant.url = "http://127.0.0.1:6333";
    };
  };

  testListenPortFromOption = {
    expr = (builtins.fromJSON (renderedOf (eval [
      enabled
      { services.hydra-coordinator.listen.port = 9000; }
    ]))).listen;
    expected = {
      host = "127.0.0.1";
      port = 9000;
    };
  };

  testSettingsListenConflictsWithListenOptions = {
    expr = evalFails (eval [
      enabled
      { services.hydra-coordinator.settings.listen.host = "0.0.0.0"; }
    ]);
    expected = true;
  };

  testNoSecretPathInRenderedConfig = {
    expr =
      let
        text = renderedOf (eval [ full ]);
      in
      {
        secretPaths = lib.hasInfix "/run/secrets" text || lib.hasInfix "/run/agenix" text;
        names = lib.hasInfix ''"api_key_file":"openai-key"'' text && lib.hasInfix ''"client-keys"'' text;
      };
    expected = {
      secretPaths = false;
      names = true;
    };
  };

  testNoSecretPathInUnitEnvironment = {
    expr = lib.hasInfix "/run/secrets" (builtins.toJSON (unitOf (eval [ full ])).environment);
    expected = false;
  };

  testLoadCredential = {
    expr = (serviceOf (eval [ full ])).LoadCredential;
    expected = [
      "client-keys:/run/agenix/hydra-client-keys"
      "openai-key:/run/secrets/openai"
    ];
  };

  testConfigIsCheckedAtBuildTime = {
    expr =
      let
        config = eval [ enabled ];
        cfg = config.services.hydra-coordinator;
        generated = (fakePkgs.formats.json { }).generate "hydra-coordinator.json" cfg.settings;
      in
      {
        name = cfg.configFile.name;
        checks = lib.hasInfix "/bin/hydra-coordinator check-config --no-secrets ${generated}" cfg.configFile.buildCommand;
      };
    expected = {
      name = "hydra-coordinator-checked.json";
      checks = true;
    };
  };

  testCheckConfigOff = {
    expr =
      (eval [
        enabled
        { services.hydra-coordinator.checkConfig = false; }
      ]).services.hydra-coordinator.configFile.name;
    expected = "hydra-coordinator.json";
  };

  testExecStartAndConfigEnvironment = {
    expr =
      let
        config = eval [ enabled ];
      in
      {
        execStart = (serviceOf config).ExecStart;
        env = (unitOf config).environment.HYDRA_COORDINATOR_CONFIG;
      };
    expected =
      let
        file = toString (eval [ enabled ]).services.hydra-coordinator.configFile;
      in
      {
        execStart = "${fakePkgs.hydra-coordinator}/bin/hydra-coordinator serve --config ${file}";
        env = file;
      };
  };

  testUnitBasics = {
    expr =
      let
        config = eval [ enabled ];
        service = serviceOf config;
      in
      {
        inherit (unitOf config) wantedBy after requires;
        inherit (service)
          DynamicUser
          User
          Group
          StateDirectory
          Restart
          SupplementaryGroups
          EnvironmentFile
          LoadCredential
          ;
      };
    expected = {
      wantedBy = [ "multi-user.target" ];
      after = [ "network-online.target" ];
      requires = [ ];
      DynamicUser = true;
      User = "hydra-coordinator";
      Group = "hydra-coordinator";
      StateDirectory = "hydra-coordinator";
      Restart = "on-failure";
      SupplementaryGroups = [ ];
      EnvironmentFile = [ ];
      LoadCredential = [ ];
    };
  };

  testHardening = {
    expr = lib.getAttrs [
      "CapabilityBoundingSet"
      "LockPersonality"
      "MemoryDenyWriteExecute"
      "NoNewPrivileges"
      "PrivateDevices"
      "PrivateTmp"
      "PrivateUsers"
      "ProcSubset"
      "ProtectHome"
      "ProtectProc"
      "ProtectSystem"
      "RestrictAddressFamilies"
      "RestrictNamespaces"
      "SystemCallArchitectures"
      "SystemCallFilter"
      "UMask"
    ] (serviceOf (eval [ enabled ]));
    expected = {
      CapabilityBoundingSet = [ "" ];
      LockPersonality = true;
      MemoryDenyWriteExecute = true;
      NoNewPrivileges = true;
      PrivateDevices = true;
      PrivateTmp = true;
      PrivateUsers = true;
      # "pid" would hide /proc/stat and with it the process_* metrics
      ProcSubset = "all";
      ProtectHome = true;
      ProtectProc = "invisible";
      ProtectSystem = "strict";
      RestrictAddressFamilies = [
        "AF_INET"
        "AF_INET6"
        "AF_UNIX"
      ];
      RestrictNamespaces = true;
      SystemCallArchitectures = "native";
      SystemCallFilter = [
        "@system-service"
        "~@privileged"
        "~@resources"
      ];
      UMask = "0077";
    };
  };

  testDatabaseCreateLocally = {
    expr =
      let
        config = eval [
          enabled
          { services.hydra-coordinator.database.createLocally = true; }
        ];
      in
      {
        inherit (config.services.postgresql) enable ensureDatabases;
        users = map (user: { inherit (user) name ensureDBOwnership; }) config.services.postgresql.ensureUsers;
        url = config.services.hydra-coordinator.settings.database.url;
        after = lib.elem "postgresql.target" (unitOf config).after;
        requires = (unitOf config).requires;
        # peer authentication: the unit's user name is the role name
        user = (serviceOf config).User;
      };
    expected = {
      enable = true;
      ensureDatabases = [ "hydra-coordinator" ];
      users = [
        {
          name = "hydra-coordinator";
          ensureDBOwnership = true;
        }
      ];
      url = "postgresql:///hydra-coordinator?host=/run/postgresql";
      after = true;
      requires = [ "postgresql.target" ];
      user = "hydra-coordinator";
    };
  };

  testRedisCreateLocally = {
    expr =
      let
        config = eval [
          enabled
          { services.hydra-coordinator.redis.createLocally = true; }
        ];
        server = config.services.redis.servers.hydra-coordinator;
      in
      {
        inherit (server) enable port;
        url = config.services.hydra-coordinator.settings.redis.url;
        groups = (serviceOf config).SupplementaryGroups;
        privateUsers = (serviceOf config).PrivateUsers;
        after = lib.elem "redis-hydra-coordinator.service" (unitOf config).after;
        requires = (unitOf config).requires;
      };
    expected = {
      enable = true;
      port = 0;
      url = "unix:///run/redis-hydra-coordinator/redis.sock";
      groups = [ "redis-hydra-coordinator" ];
      privateUsers = false;
      after = true;
      requires = [ "redis-hydra-coordinator.service" ];
    };
  };

  testQdrantUrlAndOrdering = {
    expr =
      let
        config = eval [ full ];
      in
      {
        url = config.services.hydra-coordinator.settings.qdrant.url;
        after = lib.elem "qdrant.service" (unitOf config).after;
      };
    expected = {
      url = "http://127.0.0.1:6333";
      after = true;
    };
  };

  testNoQdrantKeyByDefault = {
    expr = (eval [ enabled ]).services.hydra-coordinator.settings ? qdrant;
    expected = false;
  };

  testOpenFirewall = {
    expr = {
      closed = (eval [ enabled ]).networking.firewall.allowedTCPPorts;
      open =
        (eval [
          enabled
          {
            services.hydra-coordinator = {
              openFirewall = true;
              listen.port = 8100;
            };
          }
        ]).networking.firewall.allowedTCPPorts;
    };
    expected = {
      closed = [ ];
      open = [ 8100 ];
    };
  };

  testEnvironmentFile = {
    expr =
      (serviceOf (eval [
        enabled
        { services.hydra-coordinator.environmentFile = "/run/secrets/hydra.env"; }
      ])).EnvironmentFile;
    expected = [ "/run/secrets/hydra.env" ];
  };

  testPackageFromPkgs = {
    expr = (eval [ enabled ]).services.hydra-coordinator.package.name;
    expected = "hydra-coordinator-0.1.0";
  };

  testPackageFallsBackToFlakeSource = {
    expr =
      (evalWith (builtins.removeAttrs fakePkgs [ "hydra-coordinator" ]) [ enabled ])
      .services.hydra-coordinator.package.name;
    expected = "callPackage-hydra-coordinator";
  };

  testSystemPackages = {
    expr = map (package: package.name) (eval [ enabled ]).environment.systemPackages;
    expected = [ "hydra-coordinator-0.1.0" ];
  };

  testAssertNonLoopbackNeedsAuth = {
    expr = failsWith [
      "services.hydra-coordinator.listen.address"
      "services.hydra-coordinator.settings.auth.api_key_files"
    ] (eval [
      enabled
      { services.hydra-coordinator.listen.address = "0.0.0.0"; }
    ]);
    expected = true;
  };

  testLoopbackNamesNeedNoAuth = {
    expr = map (
      address:
      failedAssertions (eval [
        enabled
        { services.hydra-coordinator.listen.address = address; }
      ])
    ) [
      "127.0.0.1"
      "127.0.0.53"
      "::1"
      "localhost"
    ];
    expected = [
      [ ]
      [ ]
      [ ]
      [ ]
    ];
  };

  testAssertBackendCredentialDeclared = {
    expr = failsWith [
      "services.hydra-coordinator.credentials"
      ''api_key_file = "openai-key"''
      ''backend "openai"''
    ] (eval [
      { services.hydra-coordinator.settings.backends = [ openai ]; }
      { services.hydra-coordinator.enable = true; }
    ]);
    expected = true;
  };

  testAssertAuthCredentialDeclared = {
    expr = failsWith [
      "services.hydra-coordinator.credentials"
      "services.hydra-coordinator.settings.auth.api_key_files"
      "client-keys"
    ] (eval [
      enabled
      { services.hydra-coordinator.settings.auth.api_key_files = [ "client-keys" ]; }
    ]);
    expected = true;
  };

  testAdminKeysAreCredentials = {
    expr = failsWith [
      "services.hydra-coordinator.credentials"
      "services.hydra-coordinator.settings.auth.admin_key_files"
      "admin-keys"
    ] (eval [
      enabled
      { services.hydra-coordinator.settings.auth.admin_key_files = [ "admin-keys" ]; }
    ]);
    expected = true;
  };

  testAdminKeysAloneAllowANonLoopbackAddress = {
    expr = failedAssertions (eval [
      enabled
      {
        services.hydra-coordinator = {
          listen.address = "0.0.0.0";
          credentials.admin-keys = "/run/secrets/hydra-admin-keys";
          settings.auth.admin_key_files = [ "admin-keys" ];
        };
      }
    ]);
    expected = [ ];
  };

  testDescriptorAndStopLimits = {
    expr = map (config: lib.getAttrs [ "LimitNOFILE" "TimeoutStopSec" ] (serviceOf config)) [
      (eval [ enabled ])
      (eval [
        enabled
        { services.hydra-coordinator.settings.limits.shutdown_timeout_s = 4.5; }
      ])
    ];
    expected = [
      {
        LimitNOFILE = 65536;
        TimeoutStopSec = 50; # shutdown_timeout_s (20) + telemetry flush and a margin
      }
      {
        LimitNOFILE = 65536;
        TimeoutStopSec = 35;
      }
    ];
  };

  testAssertNoStoreSecrets = {
    expr = failsWith [ "Nix store" "${builtins.storeDir}/0000-openai-key" ] (eval [
      {
        services.hydra-coordinator = {
          enable = true;
          settings.backends = [ (openai // { api_key_file = "${builtins.storeDir}/0000-openai-key"; }) ];
        };
      }
    ]);
    expected = true;
  };

  testAssertCredentialNames = {
    expr = failsWith [ "services.hydra-coordinator.credentials" "bad name" ] (eval [
      enabled
      { services.hydra-coordinator.credentials."bad name" = "/run/secrets/x"; }
    ]);
    expected = true;
  };

  testAssertDatabaseUrlElsewhere = {
    expr = failsWith [
      "services.hydra-coordinator.database.createLocally"
      "services.hydra-coordinator.settings.database.url"
      "db.example.org"
    ] (eval [
      enabled
      {
        services.hydra-coordinator = {
          database.createLocally = true;
          settings.database.url = "postgresql://db.example.org/hydra";
        };
      }
    ]);
    expected = true;
  };

  testAssertRedisUrlElsewhere = {
    expr = failsWith [
      "services.hydra-coordinator.redis.createLocally"
      "services.hydra-coordinator.settings.redis.url"
    ] (eval [
      enabled
      {
        services.hydra-coordinator = {
          redis.createLocally = true;
          settings.redis.url = "redis://cache.example.org:6379";
        };
      }
    ]);
    expected = true;
  };

  testWarnAbsoluteSecretPath = {
    expr =
      let
        config = eval [
          {
            services.hydra-coordinator = {
              enable = true;
              settings.backends = [ (openai // { api_key_file = "/run/secrets/openai"; }) ];
            };
          }
        ];
      in
      {
        failed = failedAssertions config;
        warned = lib.any (lib.hasInfix "services.hydra-coordinator.credentials") config.warnings;
      };
    expected = {
      failed = [ ];
      warned = true;
    };
  };

  testCredentialsRejectStorePaths = {
    expr = evalFails (eval [
      enabled
      { services.hydra-coordinator.credentials.openai-key = "${builtins.storeDir}/00000000000000000000000000000000-openai-key"; }
    ]);
    expected = true;
  };

  testCredentialsRejectNixPathLiterals = {
    # a path literal would be copied into the store when interpolated
    expr = evalFails (eval [
      enabled
      { services.hydra-coordinator.credentials.openai-key = ./lib/stubs.nix; }
    ]);
    expected = true;
  };

  testCredentialsRejectRelativePaths = {
    expr = evalFails (eval [
      enabled
      { services.hydra-coordinator.credentials.openai-key = "secrets/openai"; }
    ]);
    expected = true;
  };
}
