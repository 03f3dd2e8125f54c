# Typed stand-in for nixpkgs' NixOS test driver (nixos/lib/test-driver/), written for
# tests/vm/typecheck: the API a test script uses, with the driver's signatures. Sources and
# commits are listed in tests/eval/NIXPKGS-FACTS.md ("NixOS VM tests").
