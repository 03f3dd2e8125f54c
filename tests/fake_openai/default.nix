# The fake OpenAI-compatible upstream used by the VM tests, packaged from the
# coordinator's own test fake (coordinator/tests/fakes/fake_openai.py, written
# with the coordinator's test suite; it needs only aiohttp).
#
#   fake-openai --host H --port P --name NAME --models m1,m2 --log FILE
#
# serves GET /v1/models, POST /v1/chat/completions and GET /_requests (the
# requests it received, for assertions).
{
  lib,
  python3,
  runCommand,
  makeWrapper,
}:

let
  script = ../../coordinator/tests/fakes/fake_openai.py;
  python = python3.withPackages (ps: [ ps.aiohttp ]);
in
assert lib.assertMsg (builtins.pathExists script)
  "tests/fake_openai: ${toString script} is missing; it comes with the coordinator's test suite.";
runCommand "fake-openai"
  {
    nativeBuildInputs = [ makeWrapper ];
    meta = {
      description = "Fake OpenAI-compatible server for the Hydra VM tests";
      mainProgram = "fake-openai";
      license = lib.licenses.mit;
      maintainers = [ ];
    };
  }
  ''
    install -Dm444 ${script} $out/libexec/fake_openai.py
    makeWrapper ${python.interpreter} $out/bin/fake-openai \
      --add-flags $out/libexec/fake_openai.py
  ''
