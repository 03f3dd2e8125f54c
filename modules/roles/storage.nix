# Role "storage": the lab's data services (PostgreSQL with a telemetry
# retention job, Redis, Qdrant on the lab network, the embeddings service
# when hydra.lab.embeddings.provider = "storage"), Jellyfin with Arc
# transcoding, and optional MindsDB / Letta containers. Monitoring
# (Prometheus, Grafana) lives in modules/monitoring and follows this role;
# the coordinator follows hydra.lab.coordinatorNode.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  lab = config.hydra.lab;
  cfg = config.hydra.roles.storage;
  embeddings = lab.embeddings;
  servesEmbeddings = embeddings.provider == "storage" && embeddings.serverNode == lab.thisNode;
  # A node that also has the compute role serves embeddings from the Ollama
  # of that role (modules/roles/compute.nix).
  alsoCompute = lib.elem "compute" lab.node.roles;
  pg = config.services.postgresql;
  identifier = lib.types.strMatching "[a-z_][a-z0-9_]*";
  labLib = import ../lab/lib.nix { inherit lib; };
  # nixos/modules/virtualisation/oci-containers.nix: serviceName "<backend>-<name>"
  lettaUnit = "${config.virtualisation.oci-containers.backend}-letta";
  # Stronger than the mkDefault (1000) of nixpkgs' modules, weaker than a
  # plain definition (100).
  labDefault = lib.mkOverride 900;
  retention = cfg.telemetryRetention;
  # Identifiers are quoted: `timestamp` is an SQL keyword.
  retentionSql = ''
    DO $$
    BEGIN
      IF to_regclass('public.${retention.table}') IS NOT NULL THEN
        DELETE FROM public."${retention.table}"
          WHERE "${retention.timestampColumn}" < now() - interval '${toString retention.days} days';
      END IF;
    END
    $$;
  '';

  # Qdrant takes its API key from its config file or the environment
  # (QDRANT__SERVICE__API_KEY overrides service.api_key); nixpkgs' module has
  # neither an option for it nor a credential, and the config file is in the
  # store. So services.qdrant.package is this wrapper, which nixpkgs' unit
  # runs as `bin/qdrant --config-path ...`: it reads the key from the unit's
  # credential and refuses to start without one.
  qdrantWithKey = pkgs.writeShellScriptBin "qdrant" ''
    key_file="''${CREDENTIALS_DIRECTORY:-/nonexistent}/api-key"
    if [ ! -s "$key_file" ]; then
      echo "qdrant: no API key in $key_file (hydra.lab.secrets.qdrantApiKeyFile); not starting on the lab network without one" >&2
      exit 1
    fi
    IFS= read -r QDRANT__SERVICE__API_KEY < "$key_file" || true
    QDRANT__SERVICE__API_KEY=''${QDRANT__SERVICE__API_KEY%$'\r'}
    export QDRANT__SERVICE__API_KEY
    exec ${cfg.qdrant.package}/bin/qdrant "$@"
  '';

  containerDb = name: {
    inherit name;
    ensureDBOwnership = true;
  };
in
{
  options.hydra.roles.storage = {
    enable = lib.mkOption {
      type = lib.types.bool;
      default = lab.node != null && lib.elem "storage" lab.node.roles;
      defaultText = lib.literalExpression ''elem "storage" config.hydra.lab.node.roles'';
      description = "Whether this host runs the lab's data services.";
    };

    telemetryRetention = {
      enable = lib.mkOption {
        type = lib.types.bool;
        default = true;
        description = "Delete old coordinator telemetry rows on a timer.";
      };
      days = lib.mkOption {
        type = lib.types.ints.positive;
        default = 90;
        description = "Telemetry rows older than this many days are deleted.";
      };
      database = lib.mkOption {
        type = lib.types.strMatching "[A-Za-z0-9_-]+";
        default = "hydra-coordinator";
        description = "Database of the coordinator (as created by services.hydra-coordinator.database.createLocally).";
      };
      table = lib.mkOption {
        type = identifier;
        default = "telemetry";
        description = "Telemetry table (schema public). A missing table is skipped, not an error.";
      };
      timestampColumn = lib.mkOption {
        type = identifier;
        default = "timestamp";
        description = "Timestamp column (timestamptz) compared with the retention window.";
      };
      schedule = lib.mkOption {
        type = lib.types.str;
        default = "daily";
        description = "systemd calendar expression of the job.";
      };
    };

    media.enable = lib.mkOption {
      type = lib.types.bool;
      default = config.hydra.gpu.intelArc.enable;
      defaultText = lib.literalExpression "config.hydra.gpu.intelArc.enable";
      description = "Run Jellyfin (with Arc QSV transcoding when hydra.gpu.intelArc is on).";
    };

    qdrant.package = lib.mkPackageOption pkgs "qdrant" {
      extraDescription = ''
        The storage role runs it through a wrapper that exports the API key
        (hydra.lab.secrets.qdrantApiKeyFile, a systemd credential) as
        `QDRANT__SERVICE__API_KEY`, Qdrant's environment override of
        `service.api_key`; services.qdrant.package is that wrapper.
      '';
    };

    mindsdb = {
      enable = lib.mkEnableOption "MindsDB (container) with its state in PostgreSQL";
      image = lib.mkOption {
        type = lib.types.str;
        default = "docker.io/mindsdb/mindsdb:latest";
        description = "MindsDB image (pin a tag or digest for reproducible deploys).";
      };
      environmentFile = lib.mkOption {
        type = lib.types.nullOr labLib.secretFile;
        default = null;
        description = ''
          Must define `MINDSDB_DB_CON=postgresql://mindsdb:PASSWORD@127.0.0.1:5432/mindsdb`
          (set the password with `ALTER ROLE mindsdb PASSWORD ...`).
        '';
      };
    };

    letta = {
      enable = lib.mkEnableOption "Letta (container) with its state in PostgreSQL (pgvector)";
      image = lib.mkOption {
        type = lib.types.str;
        default = "docker.io/letta/letta:latest";
        description = "Letta image (pin a tag or digest for reproducible deploys).";
      };
      environmentFile = lib.mkOption {
        type = lib.types.nullOr labLib.secretFile;
        default = null;
        description = ''
          Must define `LETTA_PG_URI=postgresql://letta:PASSWORD@127.0.0.1:5432/letta`
          (set the password with `ALTER ROLE letta PASSWORD ...`).
        '';
      };
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        services.postgresql = {
          enable = true;
          # Lab clients (containers in host networking, other nodes' tools)
          # come over TCP with passwords; the firewall keeps the rest out.
          enableTCPIP = lib.mkDefault true;
          authentication = lib.concatMapStrings (cidr: ''
            host all all ${cidr} scram-sha-256
          '') lab.lanCidrs;
          # Grafana reads the coordinator database over the Unix socket (peer).
          ensureUsers = [ { name = "grafana"; } ];
        };

        services.redis.servers.hydra = {
          enable = true;
          port = lab.ports.redis;
          bind = "127.0.0.1";
        };

        services.qdrant = {
          enable = true;
          # Qdrant requires the API key (below) on every request.
          package = qdrantWithKey;
          # nixpkgs' qdrant module sets these with mkDefault (host 127.0.0.1,
          # ports 6333/6334); a second mkDefault would be a conflicting
          # definition. labDefault beats mkDefault and still loses to a plain
          # definition of yours.
          settings.service = {
            host = labDefault lab.node.address;
            http_port = labDefault lab.ports.qdrantHttp;
            grpc_port = labDefault lab.ports.qdrantGrpc;
          };
        };
        systemd.services.qdrant = {
          after = [ "network-online.target" ];
          wants = [ "network-online.target" ];
          serviceConfig.LoadCredential = [ "api-key:${lab.secrets.qdrantApiKeyFile}" ];
        };

        hydra.lab.firewall.labTCPPorts = [
          pg.settings.port
          lab.ports.qdrantHttp
          lab.ports.qdrantGrpc
        ];
      }

      (lib.mkIf config.hydra.lab.coordinator.enable {
        # The role's Redis instance (above): its URL, and the coordinator
        # starts after it (without requiring it: the coordinator falls back
        # to its in-process cache while Redis is away).
        services.hydra-coordinator.settings.redis.url = lib.mkDefault "redis://127.0.0.1:${toString lab.ports.redis}/0";
        systemd.services.hydra-coordinator = {
          after = [ "redis-hydra.service" ];
          wants = [ "redis-hydra.service" ];
        };
      })

      (lib.mkIf (servesEmbeddings && alsoCompute) { services.ollama.loadModels = [ embeddings.model ]; })

      # A CPU-only Ollama that serves the embedding model (see
      # modules/lab/embeddings.nix for the choice).
      (lib.mkIf (servesEmbeddings && !alsoCompute) {
        services.ollama = {
          enable = true;
          package = lib.mkDefault pkgs.ollama-cpu;
          host = lib.mkDefault embeddings.listenAddress;
          port = lib.mkDefault lab.ports.embeddings;
          loadModels = [ embeddings.model ];
          # Keep the (small) model loaded: every knowledge-base lookup embeds.
          environmentVariables.OLLAMA_KEEP_ALIVE = lib.mkDefault "-1";
        };
        systemd.services.ollama = {
          # nixpkgs' unit keeps /dev visible for GPUs; this one uses the CPU only.
          serviceConfig.PrivateDevices = lib.mkForce true;
          # It may bind the lab address, which must exist first.
          after = [ "network-online.target" ];
          wants = [ "network-online.target" ];
        };
        hydra.lab.firewall.labTCPPorts = lib.optional (
          embeddings.listenAddress != "127.0.0.1"
        ) lab.ports.embeddings;
      })

      (lib.mkIf retention.enable {
        # Ordered on postgresql.target: the database and its owner exist then.
        systemd.services.hydra-telemetry-retention = lib.mkMerge [
          (labLib.mkPsqlService {
            description = "Delete coordinator telemetry older than ${toString retention.days} days";
            inherit (pg) package;
            inherit (retention) database;
            sql = retentionSql;
          })
          { startAt = retention.schedule; }
        ];
      })

      (lib.mkIf cfg.media.enable {
        services.jellyfin = {
          enable = true;
          # nixpkgs' module writes encoding.xml (the transcoding settings
          # below) only when Jellyfin has none yet, i.e. on first start; this
          # applies them on every start (keeping a backup of the old file), so
          # a changed setting here reaches Jellyfin. Changes made in the web
          # dashboard are overwritten: set this to false to keep those.
          forceEncodingConfig = lib.mkDefault config.hydra.gpu.intelArc.enable;
          hardwareAcceleration = lib.mkIf config.hydra.gpu.intelArc.enable {
            enable = true;
            type = lib.mkDefault "qsv";
            device = lib.mkDefault config.hydra.gpu.intelArc.renderDevice;
          };
          transcoding = lib.mkIf config.hydra.gpu.intelArc.enable {
            enableHardwareEncoding = lib.mkDefault true;
            # What the A380 (DG2) decodes and encodes in hardware.
            hardwareDecodingCodecs = {
              h264 = lib.mkDefault true;
              hevc = lib.mkDefault true;
              hevc10bit = lib.mkDefault true;
              vp9 = lib.mkDefault true;
              av1 = lib.mkDefault true;
            };
            hardwareEncodingCodecs = {
              hevc = lib.mkDefault true;
              av1 = lib.mkDefault true;
            };
          };
        };
        systemd.services.jellyfin = lib.mkIf config.hydra.gpu.intelArc.enable {
          environment.LIBVA_DRIVER_NAME = "iHD";
          # nixpkgs' module allows the render node (DeviceAllow) but runs
          # Jellyfin as a plain system user; the node is root:render 0660, so
          # without the group every hardware transcode fails with EACCES and
          # Jellyfin falls back to the CPU (nixpkgs' ollama module does the same).
          serviceConfig.SupplementaryGroups = [ "render" ];
        };
        hydra.lab.firewall.labTCPPorts = [ lab.ports.jellyfin ];
      })

      (lib.mkIf (cfg.mindsdb.enable || cfg.letta.enable) {
        virtualisation.podman.enable = lib.mkDefault true;
        virtualisation.oci-containers.backend = lib.mkDefault "podman";
        services.postgresql.ensureDatabases =
          lib.optional cfg.mindsdb.enable "mindsdb" ++ lib.optional cfg.letta.enable "letta";
        services.postgresql.ensureUsers =
          lib.optional cfg.mindsdb.enable (containerDb "mindsdb")
          ++ lib.optional cfg.letta.enable (containerDb "letta");
      })

      (lib.mkIf cfg.mindsdb.enable {
        virtualisation.oci-containers.containers.mindsdb = {
          image = cfg.mindsdb.image;
          # Host networking: PostgreSQL is reached on 127.0.0.1 and the
          # ports are covered by the lab firewall like any host service.
          extraOptions = [ "--network=host" ];
          environmentFiles = lib.optional (cfg.mindsdb.environmentFile != null) cfg.mindsdb.environmentFile;
          volumes = [ "/var/lib/mindsdb:/root/mdb_storage" ];
        };
        systemd.tmpfiles.rules = [ "d /var/lib/mindsdb 0700 root root -" ];
        hydra.lab.firewall.labTCPPorts = [
          47334
          47335
        ];
      })

      (lib.mkIf cfg.letta.enable {
        services.postgresql.extensions = ps: [ ps.pgvector ];
        # CREATE EXTENSION vector needs a superuser (pgvector's vector.control
        # is not `trusted`): create it as postgres before Letta starts, so the
        # letta role needs no superuser rights.
        systemd.services.hydra-letta-pgvector = lib.mkMerge [
          (labLib.mkPsqlService {
            description = "Create the pgvector extension in Letta's database";
            inherit (pg) package;
            database = "letta";
            sql = "CREATE EXTENSION IF NOT EXISTS vector;";
          })
          { serviceConfig.RemainAfterExit = true; }
        ];
        systemd.services.${lettaUnit} = {
          after = [ "hydra-letta-pgvector.service" ];
          requires = [ "hydra-letta-pgvector.service" ];
        };
        virtualisation.oci-containers.containers.letta = {
          image = cfg.letta.image;
          extraOptions = [ "--network=host" ];
          environmentFiles = lib.optional (cfg.letta.environmentFile != null) cfg.letta.environmentFile;
          environment.OPENAI_API_BASE = lib.mkIf (lab.coordinatorUrl != null) lab.coordinatorUrl;
        };
        hydra.lab.firewall.labTCPPorts = [ 8283 ];
      })

      {
        assertions = [
          {
            assertion = !cfg.mindsdb.enable || cfg.mindsdb.environmentFile != null;
            message = "hydra.roles.storage.mindsdb needs environmentFile with MINDSDB_DB_CON (the database password stays out of the store).";
          }
          {
            assertion = !cfg.letta.enable || cfg.letta.environmentFile != null;
            message = "hydra.roles.storage.letta needs environmentFile with LETTA_PG_URI (the database password stays out of the store).";
          }
        ];
      }
    ]
  );
}
