"""Build ``bench/privacy_corpus.jsonl``: the labelled corpus for ``privacy_eval.py``.

Each line is ``{"text", "label": "secret"|"pii"|"clean", "source"}``. Three kinds:

* short example strings copied from public scanner test fixtures, with the
  repository and file named in ``source`` (detect-secrets, gitleaks,
  presidio, jwt.io);
* generated examples in documented formats: provider keys with random bodies,
  payment cards and IBANs with valid check digits (python-stdnum), national
  ids that validate (``source`` says ``generated:...``);
* look-alike negatives: placeholders, documentation that talks about keys,
  hashes, UUIDs, invalid check digits, reserved example domains.

All secrets here are fake. The output is deterministic (fixed seed); rerun with
``python bench/build_privacy_corpus.py`` after editing.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

from stdnum import iban, luhn
from stdnum.br import cpf
from stdnum.es import dni
from stdnum.us import ssn

OUT = Path(__file__).with_name("privacy_corpus.jsonl")
RNG = random.Random(20240604)
ALNUM = string.ascii_letters + string.digits

DS = "github:Yelp/detect-secrets"
GL = "github:gitleaks/gitleaks"
PR = "github:microsoft/presidio"


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def card(prefix: str, length: int) -> str:
    body = prefix + rand(length - len(prefix) - 1, string.digits)
    return body + luhn.calc_check_digit(body)


def make_iban(country: str, bban: str) -> str:
    check = iban.calc_check_digits(country + "00" + bban)
    return iban.format(country + check + bban)


def make_ssn() -> str:
    while True:
        value = f"{RNG.randint(100, 665):03d}-{RNG.randint(1, 99):02d}-{RNG.randint(1, 9999):04d}"
        if ssn.is_valid(value):
            return value


def make_cpf() -> str:
    base = rand(9, string.digits)
    return cpf.format(base + cpf._calc_check_digits(base))


def make_dni() -> str:
    base = rand(8, string.digits)
    return base + dni.calc_check_digit(base)


FIXTURES: list[tuple[str, str, str]] = [
    # ---- secrets from scanner fixtures
    (
        "base64_secret = 'c2VjcmV0IG1lc3NhZ2Ugc28geW91J2xsIG5ldmVyIGd1ZXNzIG15IHBhc3N3b3Jk'",
        "secret",
        f"{DS}:test_data/each_secret.py",
    ),
    (
        "hex_secret = '8b1118b376c313ed420e5133ba91307817ed52c2'",
        "secret",
        f"{DS}:test_data/each_secret.py",
    ),
    (
        "basic_auth = 'http://username:whywouldyouusehttpforpasswords@example.com'",
        "secret",
        f"{DS}:test_data/each_secret.py",
    ),
    ("mimi=gX69YO4CvBsVjzAwYxdGyDd30t5+9ez31gKATtj4", "secret", f"{DS}:test_data/config.env"),
    (
        "sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaao"
        "gaopaaaabc123xyzAA",
        "secret",
        f"{GL}:cmd/generate/config/rules/anthropic.go",
    ),
    (
        '"client_secret" : "6da89121079f83b2eb6acccf8219ea982c3d79bccc3e9c6a85856480661f8fde",',
        "secret",
        f"{GL}:cmd/generate/config/rules/generic.go",
    ),
    (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
        "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "secret",
        "jwt.io debugger example token",
    ),
    # ---- look-alikes from scanner fixtures (their false-positive lists)
    ("DB_PASSWORD=[value]", "clean", f"{GL}:cmd/generate/config/rules/database.go (fps)"),
    ("somepwd=XXXXXXXXXXXXXXX", "clean", f"{GL}:cmd/generate/config/rules/database.go (fps)"),
    (
        "client_vpn_endpoint_id = aws_ec2_client_vpn_endpoint.client-vpn-endpoint.id",
        "clean",
        f"{GL}:cmd/generate/config/rules/generic.go (fps)",
    ),
    (
        "password combination.\n\nR5: Regulatory--21",
        "clean",
        f"{GL}:cmd/generate/config/rules/generic.go (fps)",
    ),
    (
        'anthropic_token = "sk-ant-oat01-tooShort"',
        "clean",
        f"{GL}:cmd/generate/config/rules/anthropic.go (fps)",
    ),
    ("red_herring = 'DEADBEEF'", "clean", f"{DS}:test_data/each_secret.py"),
    (
        "aws_access_key = 'AKIAIOSFODNN7EXAMPLE'",
        "clean",
        f"{DS}:test_data/each_secret.py (AWS documentation example key)",
    ),
    (
        "aws_secret_access_key = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'",
        "clean",
        f"{DS}:test_data/each_secret.py (AWS documentation example key)",
    ),
    # ---- personal data from presidio's recognizer tests
    (
        "4012888888881881 4012-8888-8888-1881",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    (
        "my credit card: 371449635398431",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    (
        "card 5555555555554444 expires 04/27",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    (
        "Diners: 30569309025904",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    (
        "pay with 6011000400000000 please",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    ("JCB 3528000700000000", "pii", f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py"),
    (
        "visa 4111111111111111",
        "pii",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py",
    ),
    (
        "my credit card number is 4012-8888-8888-1882",
        "clean",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py (invalid checksum)",
    ),
    (
        "my credit card number is 36168002586008",
        "clean",
        f"{PR}:presidio-analyzer/tests/test_credit_card_recognizer.py (invalid checksum)",
    ),
    ("IBAN GB82 WEST 1234 5698 7654 32 for the transfer", "pii", "ECBS IBAN standard example"),
    ("Konto: DE89 3704 0044 0532 0130 00", "pii", "ECBS IBAN standard example"),
    (
        "wire to GB82 WEST 1234 5698 7654 33 today",
        "clean",
        "ECBS IBAN example, check digits broken",
    ),
]


# Written after the detectors were tuned and never used to tune them: the
# evaluation reports this split separately as an out-of-sample check.
HELD_OUT: list[tuple[str, str]] = [
    ("psql 'postgresql://reporting:Tq8vN2xLw5@10.0.3.12:5432/metrics'", "secret"),
    ("export GITLAB_TOKEN=glpat-7Hq2Lm9Xv4Rt1Ws6Yb3N", "secret"),
    ('{"openai_api_key": "sk-Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5Nm7Qw9Er1Ty"}', "secret"),
    (
        "-----BEGIN PRIVATE KEY-----\n"
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
        "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
        "-----END PRIVATE KEY-----",
        "secret",
    ),
    ("AWS creds: aws_access_key_id=ASIAY34FZKBOKMUTVV7A", "secret"),
    ("MYSQL_ROOT_PASSWORD=Lk2#pQ9!vRx7", "secret"),
    ("headers = {'Authorization': 'token ghp_R4nD0mT0k3nV4lu3F0rT3st1ngPurp0s3s12'}", "secret"),
    (
        "webhook https://hooks.slack.com/services/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",
        "secret",
    ),
    ("const stripe = require('stripe')('sk_live_51HqLyjWDarjtT1zdp7dcXyz')", "secret"),
    ("HF_TOKEN=hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", "secret"),
    (
        "The API returned 401 with key "
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        ", is it expired?",
        "secret",
    ),
    ("redis-cli -a 'Zp3!kL9@qW2' ping", "secret"),
    ("DJANGO_SECRET_KEY='django-insecure-9x#k2@p!m4v&z8q$w1e^r6t*y3u(i0o'", "secret"),
    (
        "token: eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ."
        "eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20iLCJzd"
        "WIiOiI0MiJ9.c2lnbmF0dXJlLXBhcnQtdGhhdC1pcy1sb25nLWVub3VnaA",
        "secret",
    ),
    ("Patient John Miller, DOB 03/04/1975, phone (617) 555-0147, lives in Boston.", "pii"),
    ("Bitte rufen Sie mich unter +49 171 2345678 an.", "pii"),
    ("Email the contract to r.fernandez@telefonica.es by Friday.", "pii"),
    ("IBAN: FR14 2004 1010 0505 0001 3M02 606", "pii"),
    ("Mastercard 5425 2334 3010 9903 exp 04/26", "pii"),
    ("My social security number is 123-45-6789", "pii"),
    ("Mi DNI es 12345678Z", "pii"),
    ("Reach me on WhatsApp: +91 98200 12345", "pii"),
    ("Send the refund to card 4242 4242 4242 4242", "pii"),
    ("Contact: amelie.dubois@orange.fr, +33 6 12 34 56 78", "pii"),
    ("BSN 111222333 voor de aanvraag", "pii"),
    ("His NHS number is 943 476 5919", "pii"),
    ("Use the placeholder sk-your-key-here in the README.", "clean"),
    ("The regex for an AWS key is AKIA[0-9A-Z]{16}.", "clean"),
    ("Our support line is open 9-17, call 0800 and ask for billing.", "clean"),
    ("The commit hash is a94a8fe5ccb19ba61c4c0873d391e987982fbbd3.", "clean"),
    (
        "ERROR 1045 (28000): Access denied for user 'root'@'localhost' (using password: YES)",
        "clean",
    ),
    ("Set PASSWORD_MIN_LENGTH=12 in settings.", "clean"),
    ("kubectl get secret db-creds -o jsonpath='{.data.password}' | base64 -d", "clean"),
    ("A Visa number has 16 digits and starts with 4, like 4xxx xxxx xxxx xxxx.", "clean"),
    ("Meeting at 10:30, room 4.12, dial-in code 845 221 907.", "clean"),
    ("The tracking number is 1Z999AA10123456784.", "clean"),
    ("Pi to 20 digits is 3.14159265358979323846.", "clean"),
    ("UUID v4: 3b241101-e2bb-4255-8caf-4136c566a962", "clean"),
    ("docker login -u myuser --password-stdin < token.txt", "clean"),
    ('The JWT header eyJhbGciOiJIUzI1NiJ9 decodes to {"alg":"HS256"}.', "clean"),
    ("Email format: firstname.lastname@company.com", "clean"),
    ("Call 911 in an emergency or 112 in Europe.", "clean"),
    ("The ISBN-13 9780306406157 is valid.", "clean"),
]


def generated_secrets() -> list[tuple[str, str, str]]:
    gen = "generated:documented format"
    return [
        (
            f"export AWS_ACCESS_KEY_ID=AKIA{rand(16, string.ascii_uppercase + string.digits)}",
            "secret",
            gen,
        ),
        (f'aws_secret_access_key = "{rand(40, ALNUM + "/+")}"', "secret", gen),
        (f"Why does git push fail with my token ghp_{rand(36)} ?", "secret", gen),
        (f"GITHUB_TOKEN=github_pat_{rand(82, ALNUM + '_')}", "secret", gen),
        (f"gitlab: glpat-{rand(20, ALNUM + '-_')}", "secret", gen),
        (f'client = OpenAI(api_key="sk-proj-{rand(64, ALNUM + "-_")}")', "secret", gen),
        (f"my key is sk-{rand(20)}T3BlbkFJ{rand(20)}", "secret", gen),
        (f"ANTHROPIC_API_KEY=sk-ant-api03-{rand(93, ALNUM + '-_')}AA", "secret", gen),
        (f"const key = 'AIza{rand(35, ALNUM + '-_')}';", "secret", gen),
        (f"huggingface-cli login --token hf_{rand(34, string.ascii_letters)}", "secret", gen),
        (
            f"SLACK_BOT_TOKEN=xoxb-{rand(11, string.digits)}-{rand(12, string.digits)}-"
            f"{rand(24).lower()}",
            "secret",
            gen,
        ),
        (
            f"webhook: https://hooks.slack.com/services/T{rand(8)}/B{rand(8)}/{rand(24)}",
            "secret",
            gen,
        ),
        (f'stripe.api_key = "sk_live_{rand(24)}"', "secret", gen),
        (f"SENDGRID_API_KEY=SG.{rand(22, ALNUM + '-_')}.{rand(43, ALNUM + '-_')}", "secret", gen),
        (f"//registry.npmjs.org/:_authToken=npm_{rand(36)}", "secret", gen),
        (f"password = pypi-AgEIcHlwaS5vcmc{rand(80, ALNUM + '-_')}", "secret", gen),
        (
            "DefaultEndpointsProtocol=https;AccountName=acme;"
            f"AccountKey={rand(86, ALNUM + '+/')}==;",
            "secret",
            gen,
        ),
        (
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9."
            "eyJzdWIiOiJ1c2VyLTQyIiwicm9sZSI6ImFkbWluIn0."
            f"{rand(43, ALNUM + '-_')}",
            "secret",
            gen,
        ),
        (
            "-----BEGIN RSA PRIVATE KEY-----\n"
            + "\n".join(rand(64, ALNUM + "+/") for _ in range(4))
            + "\n-----END RSA PRIVATE KEY-----",
            "secret",
            gen,
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAA"
            + rand(60, ALNUM + "+/")
            + "\n-----END OPENSSH PRIVATE KEY-----",
            "secret",
            gen,
        ),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"
            + rand(56, ALNUM + "+/")
            + "\n-----END EC PRIVATE KEY-----",
            "secret",
            gen,
        ),
        (f"DATABASE_URL=postgres://app:{rand(16)}@db.internal.lan:5432/app", "secret", gen),
        (f"mongodb+srv://admin:{rand(12)}@cluster0.mongodb.net/test", "secret", gen),
        (f"Server=tcp:sql.lan,1433;Database=crm;User ID=sa;Password={rand(14)};", "secret", gen),
        (f"redis://:{rand(20)}@cache.lan:6379/0", "secret", gen),
        (f"DB_PASSWORD={rand(18, ALNUM + '!@%^')}", "secret", gen),
        (f"SECRET_KEY={rand(50, ALNUM + '!@#%^&*(-_=+)')}", "secret", gen),
        (f"SMTP_PASS={rand(12)}\nSMTP_USER=mailer", "secret", gen),
        (f'  password: "{rand(10)}"', "secret", gen),
        (f'db_password = "{rand(12)}"', "secret", gen),
        (f"config.set('api_key', '{rand(32).lower()}')", "secret", gen),
        (f"The service token is {rand(40, ALNUM)} - why is it rejected?", "secret", gen),
        (f"curl -H 'X-Api-Key: {rand(32)}' https://api.vendor.io/v1/items", "secret", gen),
        (f"TWILIO_API_KEY=SK{rand(32, string.digits + 'abcdef')}", "secret", gen),
        (f"MAILCHIMP_KEY={rand(32, string.digits + 'abcdef')}-us14", "secret", gen),
        (f"bot token {rand(10, string.digits)}:AA{rand(33, ALNUM + '-_')}", "secret", gen),
        (f"PRIVATE_TOKEN={rand(40, string.hexdigits.lower()[:16])}", "secret", gen),
        (
            f'{{"type": "service_account", "private_key_id": "{rand(40, "0123456789abcdef")}"}}',
            "secret",
            gen,
        ),
        (f"Here is my .env:\nOPENAI_API_KEY=sk-{rand(48)}\nDEBUG=true", "secret", gen),
        (f"sq0csp-{rand(43, ALNUM + '-_')}", "secret", gen),
    ]


def generated_pii() -> list[tuple[str, str, str]]:
    gen = "generated:valid check digits"
    names = ["maria.schmidt", "j.okafor", "li.wei88", "anna-k", "peter.novak", "sofia.r"]
    domains = ["gmail.com", "posteo.de", "uni-heidelberg.de", "outlook.com", "proton.me", "acme.io"]
    rows: list[tuple[str, str, str]] = []
    for name, domain in zip(names, domains, strict=True):
        rows.append(
            (f"Please reply to {name}@{domain} with the draft.", "pii", "generated:address")
        )
    phones = [
        "+1 415-555-2671",
        "+44 20 7946 0958",
        "+49 30 901820",
        "(415) 555-0132",
        "+33 1 42 68 53 00",
        "+91 98765 43210",
        "020 7946 0123",
        "+1 (212) 555-0198",
    ]
    for phone in phones:
        rows.append(
            (f"You can call me at {phone} after 5pm.", "pii", "generated:phonenumbers-valid")
        )
    rows.append(("Mobile: 4155550199", "pii", "generated:phonenumbers-valid"))
    for prefix, length in [
        ("4", 16),
        ("51", 16),
        ("37", 15),
        ("6011", 16),
        ("3528", 16),
        ("2221", 16),
    ]:
        number = card(prefix, length)
        grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
        rows.append((f"Charge it to {grouped}, exp 09/28, cvc 123", "pii", gen))
    for country, bban in [
        ("DE", "37040044" + rand(10, string.digits)),
        ("FR", "2004101005" + rand(11, string.digits) + "06"),
        ("NL", "ABNA" + rand(10, string.digits)),
        ("ES", rand(20, string.digits)),
        ("IT", "X0542811101000000" + rand(10, string.digits)[:10]),
    ]:
        value = make_iban(country, bban)
        if iban.is_valid(value):
            rows.append((f"Bitte überweisen an {value}", "pii", gen))
    for _ in range(4):
        rows.append((f"My SSN is {make_ssn()} and I need help with the form.", "pii", gen))
    rows.append((f"CPF do cliente: {make_cpf()}", "pii", gen))
    rows.append((f"DNI {make_dni()} para la matrícula", "pii", gen))
    rows.append(("Codice fiscale: RSSMRA85T10A562S", "pii", "python-stdnum docs example"))
    rows.append(("Aadhaar 2345 6789 0124 is linked", "pii", "generated:verhoeff"))
    rows.append(("NI number JG 10 37 22 B (national insurance)", "pii", "generated:NINO format"))
    rows.append(("Steuer-ID: 36574261809", "pii", "python-stdnum de.idnr docs example"))
    return rows


def clean_lookalikes() -> list[tuple[str, str, str]]:
    la = "look-alike negative"
    rows = [
        "Set OPENAI_API_KEY=YOUR_API_KEY in your shell before running the script.",
        "export ANTHROPIC_API_KEY=<your-key-here>",
        'api_key = os.environ["OPENAI_API_KEY"]',
        "password: ${DB_PASSWORD}",
        "DATABASE_URL=postgres://user:password@localhost:5432/db",
        "Connection string: Server=myServer;Database=myDB;User Id=myUser;Password=<password>;",
        "How do I rotate an AWS access key? The docs say keys start with AKIA.",
        "What is a JWT and why does it start with eyJ?",
        "My private key file begins with -----BEGIN RSA PRIVATE KEY----- is that PKCS#1?",
        "Never commit secrets; use a .env file and add it to .gitignore.",
        "The token looks like ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx in the docs.",
        "Use sk-... as a placeholder for the key in examples.",
        "SECRET_KEY=changeme",
        'password = ""',
        "TOKEN=${{ secrets.GITHUB_TOKEN }}",
        "Our API key rotation policy requires new keys every 90 days.",
        "The password must be at least 12 characters long.",
        'fetchFromGitHub { rev = "3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39"; }',
        'sha256 = "0v5hnyx2hpmxcz3gvkdc0c5n8kh0xlq5pvllm5rw0hdgmc7dqzp6";',
        "integrity sha512-Q2tfgvHj7JbTXNEBzLcVXeO8I9dWz2xqG5L9Y8j0dJ1Y3sY"
        "wqCz7l1tT2kQy6o8n4v0c3zP1wRmHf8eXbA",
        "commit 8b1118b376c313ed420e5133ba91307817ed52c2 fixed the regression",
        "request id 550e8400-e29b-41d4-a716-446655440000 failed",
        "See /usr/share/doc/python3/examples/configuration/defaults/settings.toml",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghij",
        "Write a Python function that validates credit card numbers with the Luhn algorithm.",
        "The test card 1234 5678 9012 3456 is not valid.",
        "Call the function with 1234567890 as the seed.",
        "The timestamp 1700000000 corresponds to November 2023.",
        "Send an email to user@example.com to test the SMTP setup.",
        "git clone git@github.com:NixOS/nixpkgs.git",
        "Contact admin@localhost if the build fails.",
        "Version 10.2.3 was released on 2024-03-15.",
        "The order total was 1234.56 EUR for 12 items.",
        "Explain how IBAN check digits work, e.g. the DE prefix.",
        "Our SLA is 99.95% with a 30 minute response time.",
        "Matrix dims are 1024 x 768 x 3 and the batch size is 512.",
        "ISBN 978-3-16-148410-0 is the book I mentioned.",
        "Port 8092 and port 11434 must be open on the GPU host.",
        "pip install torch==2.3.1+cu121 --index-url https://download.pytorch.org/whl/cu121",
        "The base64 of 'hello' is aGVsbG8=.",
        'Use `ssh-keygen -t ed25519 -C "me"` to create a key pair.',
        "What's the difference between an access token and a refresh token?",
        "Please summarise this meeting transcript about the Q3 roadmap.",
        "Translate 'good morning' into German, French and Spanish.",
        "Write a haiku about GPUs running hot in summer.",
        "Refactor this function to use a dict comprehension instead of a loop.",
        "docker run -e POSTGRES_PASSWORD=$POSTGRES_PASSWORD postgres:16",
        "kubectl create secret generic db --from-literal=password=REPLACE_ME",
        "The phone number format in the US is (XXX) XXX-XXXX.",
        "The SSN format is AAA-GG-SSSS; never paste a real one here.",
        "HMRC uses QQ 12 34 56 C as the example national insurance number.",
        "SSN 078-05-1120 is the famous Woolworth wallet card number, invalid today.",
        "Invoice INV-2024-000123 is due on 15.07.2024.",
        "Coordinates 52.5200, 13.4050 are in Berlin.",
        "The model has 7000000000 parameters and a 32768 token context.",
        "Compare sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 with the release notes.",
        "Your token here: <TOKEN>",
        "AWS_SECRET_ACCESS_KEY=your-secret-access-key",
        'client_secret: "{{ vault_client_secret }}"',
        "The key id is AKIA followed by 16 characters.",
        "Hugging Face tokens start with hf_ and are created in settings.",
        "const password = process.env.DB_PASSWORD;",
        "What does HTTP 401 Unauthorized mean for my bearer token?",
        "In JSON Web Tokens the header and payload are base64url encoded.",
    ]
    return [(text, "clean", la) for text in rows]


def main() -> None:
    rows = [*FIXTURES, *generated_secrets(), *generated_pii(), *clean_lookalikes()]
    rows += [(text, label, "held-out (written after tuning)") for text, label in HELD_OUT]
    with OUT.open("w", encoding="utf-8") as out:
        for text, label, source in rows:
            out.write(json.dumps({"text": text, "label": label, "source": source}) + "\n")
    counts = {
        label: sum(1 for _, lab, _ in rows if lab == label) for label in ("secret", "pii", "clean")
    }
    print(f"wrote {len(rows)} lines to {OUT}: {counts}")


if __name__ == "__main__":
    main()
