# Pure helpers for the lab modules (no module arguments, so the eval
# tests can call them directly): firewall rule generation, IPv4 and URL
# parsing, psql jobs.
{ lib }:
let
  isIPv6 = lib.hasInfix ":";

  parseIPv4 =
    address:
    let
      m = builtins.match "([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})\\.([0-9]{1,3})" address;
      octets = map lib.toIntBase10 m;
    in
    if m == null || lib.any (o: o > 255) octets then
      null
    else
      lib.foldl (acc: o: acc * 256 + o) 0 octets;

  sortedPorts = ports: lib.sort lib.lessThan (lib.unique ports);
in
{
  # A secret file: an absolute path on the target machine, as a string, never
  # a store path (the store is world-readable) nor a path literal (which Nix
  # would copy into the store).
  secretFile = lib.types.pathWith {
    inStore = false;
    absolute = true;
  };

  # nftables statements for networking.firewall.extraInputRules that accept
  # new TCP connections to `tcpPorts` only when they come from `sources`
  # (CIDRs or addresses). Everything else still falls through to the
  # firewall's default reject. Returns "" when there is nothing to allow.
  mkInputRules =
    { sources, tcpPorts }:
    let
      v4 = lib.filter (s: !isIPv6 s) sources;
      v6 = lib.filter isIPv6 sources;
      ports = "{ ${lib.concatMapStringsSep ", " toString (sortedPorts tcpPorts)} }";
      rule = family: srcs: "${family} saddr { ${lib.concatStringsSep ", " srcs} } tcp dport ${ports} accept";
    in
    lib.optionalString (tcpPorts != [ ]) (
      lib.concatStringsSep "\n" (
        lib.optional (v4 != [ ]) (rule "ip" v4) ++ lib.optional (v6 != [ ]) (rule "ip6" v6)
      )
    );

  # "192.168.50.1" -> 3232248321; null when it is not a dotted-quad IPv4 address.
  inherit parseIPv4;

  # Whether IPv4 `address` lies in the network of `network`/`prefixLength`
  # (false when either is not an IPv4 address).
  inSubnet =
    address: network: prefixLength:
    let
      a = parseIPv4 address;
      n = parseIPv4 network;
      size = lib.foldl (acc: _: acc * 2) 1 (lib.range 1 (32 - prefixLength));
    in
    a != null && n != null && a / size == n / size;

  # A systemd service that runs `sql` with psql as the PostgreSQL superuser
  # in `database`, once PostgreSQL and its setup (ensureDatabases,
  # ensureUsers) are done: postgresql.target, which nixpkgs' module reaches
  # after postgresql-setup.service. A missing database is skipped (it only
  # exists once its owner is set up), not an error. `sql` runs as one psql
  # script with ON_ERROR_STOP, so psql's \gset and :"var" work.
  mkPsqlService =
    {
      description,
      package,
      database,
      sql,
    }:
    {
      inherit description;
      after = [ "postgresql.target" ];
      requires = [ "postgresql.target" ];
      path = [ package ];
      script = ''
        if [ "$(psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${database}'")" != 1 ]; then
          echo "database ${database} does not exist (yet): nothing to do"
          exit 0
        fi
        psql -v ON_ERROR_STOP=1 --dbname=${lib.escapeShellArg database} <<'SQL'
        ${sql}
        SQL
      '';
      serviceConfig = {
        Type = "oneshot";
        User = "postgres";
        Group = "postgres";
      };
    };

  # "http://10.0.0.2:5000/v1" -> { scheme = "http"; host = "10.0.0.2"; port = 5000; }
  # (port defaults from the scheme); null when the URL does not parse.
  parseUrl =
    url:
    let
      m = builtins.match "([a-z]+)://(\\[[^]]*]|[^/:]+)(:([0-9]+))?(/.*)?" url;
      scheme = lib.elemAt m 0;
      port = lib.elemAt m 3;
    in
    if m == null then
      null
    else
      {
        inherit scheme;
        host = lib.removeSuffix "]" (lib.removePrefix "[" (lib.elemAt m 1));
        port =
          if port != null then
            lib.toInt port
          else if scheme == "https" then
            443
          else
            80;
      };
}
