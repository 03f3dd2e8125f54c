"""docs/configuration.md documents every configuration key, as the settings models declare it."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from hydra_coordinator import config_reference
from hydra_coordinator.config import Settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "configuration.md"


def all_keys(model: type[BaseModel], prefix: str = "") -> typing.Iterator[str]:
    """Every key of ``model``, walked independently of the generator."""
    for name, field in model.model_fields.items():
        key = prefix + name
        yield key
        annotation = field.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) in (typing.Union, type(int | None)) and len(args) == 1:
            annotation = args[0]
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from all_keys(annotation, key + ".")
        elif origin is list and issubclass_model(typing.get_args(annotation)[0]):
            yield from all_keys(typing.get_args(annotation)[0], key + "[].")
        elif origin is dict and issubclass_model(typing.get_args(annotation)[1]):
            yield from all_keys(typing.get_args(annotation)[1], key + ".<key id>.")


def issubclass_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def test_the_reference_is_up_to_date() -> None:
    current = REFERENCE.read_text(encoding="utf-8")
    wanted = config_reference.splice(current, config_reference.render())
    assert current == wanted, "docs/configuration.md is out of date: run docs/gen-config"


def test_every_key_has_a_row_with_a_description() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    rows = {
        line.split("|")[1].strip().strip("`"): line.split("|")[4].strip()
        for line in text.splitlines()
        if line.startswith("| `")
    }
    sections = set(Settings.model_fields)
    missing = [k for k in all_keys(Settings) if k not in rows and k not in sections]
    assert missing == []
    assert all(rows.values()), [k for k, v in rows.items() if not v]
    # the rows are the whole set of keys: none left over from a key that was removed
    assert set(rows) <= set(all_keys(Settings))


def test_a_key_without_a_description_fails_the_generator() -> None:
    class Section(BaseModel):
        documented: int = Field(default=1, description="A documented key.")
        undocumented: int = 2

    class Top(BaseModel):
        section: Section = Field(default_factory=Section, description="A section.")

    with pytest.raises(config_reference.UndocumentedKeyError, match=r"section\.undocumented"):
        list(config_reference.rows(Top))


def test_check_mode_says_how_to_regenerate(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(
        REFERENCE.read_text(encoding="utf-8").replace("| `listen.port` |", "| `listen.prt` |"),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "hydra_coordinator.config_reference", "--check"]
    result = subprocess.run([*command, str(stale)], check=False, capture_output=True, text=True)
    assert result.returncode == 1
    assert "run docs/gen-config" in result.stderr

    ok = subprocess.run([*command, str(REFERENCE)], check=False, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

    subprocess.run(
        [
            sys.executable,
            "-m",
            "hydra_coordinator.config_reference",
            "--write",
            str(stale),
        ],
        check=True,
        capture_output=True,
    )
    assert stale.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")
