# Prompts carrying a secret (an AWS access key, a private key block) never
# reach the cloud upstream, whatever model the client asks for; ordinary
# prompts do.
{ self, ... }:

{
  name = "coordinator-privacy";
  meta.maintainers = [ ];

  nodes.machine = {
    imports = [
      self.nixosModules.coordinator
      ./lib/fake-upstreams.nix
    ];
  };

  testScript = builtins.readFile ./lib/helpers.py + ''
    start_and_wait()

    aws_key = "AKIAIOSFODNN7EXAMPLE"
    private_key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    secret_prompts = [
        f"Why does `aws s3 ls` fail with key {aws_key} and secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY?",
        f"Is this key still valid?\n{private_key}",
    ]

    with subtest("secrets never reach the cloud upstream"):
        for prompt in secret_prompts:
            for model in ("auto", "cloud", "gpt-4.1-mini"):
                status, headers, body = chat(model, prompt, expect_ok=False)
                # Served locally or refused: both keep the secret at home.
                assert status == 200 or 400 <= status < 500, f"{model}: HTTP {status}: {body}"
                assert headers.get("x-hydra-backend") != "cloud", f"{model}: {headers}"
        assert upstream_requests(CLOUD) == [], upstream_requests(CLOUD)
        machine.fail("grep -rq -e AKIAIOSFODNN7EXAMPLE -e 'PRIVATE KEY' /var/lib/fake-cloud")

    with subtest("ordinary prompts do reach the cloud"):
        _status, headers, _body = chat("cloud", "What is the capital of France?")
        assert headers["x-hydra-backend"] == "cloud", headers
        received = upstream_requests(CLOUD)
        assert len(received) == 1, received
        assert "capital of France" in json.dumps(received), received
        assert aws_key not in json.dumps(received)
  '';
}
