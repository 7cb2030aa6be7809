"""The generated references in docs/ are current: docs/json-reference.md equals what the config
dataclasses generate, docs/cli-reference.md what the commands' parsers generate."""

from __future__ import annotations

import difflib

import pytest

from tests.conftest import REPO

GENERATED = {
    "docs/json-reference.md": ("destiny.config.reference", "python -m destiny.config.reference > docs/json-reference.md"),
    "docs/cli-reference.md": ("destiny.cli.reference", "python -m destiny.cli.reference > docs/cli-reference.md"),
}


@pytest.mark.parametrize("path", sorted(GENERATED))
def test_generated_reference_is_current(path):
    import importlib

    module, command = GENERATED[path]
    wanted = importlib.import_module(module).render()
    committed = (REPO / path).read_text(encoding="utf-8")
    if committed != wanted:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), wanted.splitlines(True), path,
                                                 "generated", n=1))[:60])
        pytest.fail(f"{path} is out of date with the code; regenerate it with `{command}`\n{diff}")


def test_every_config_key_and_command_is_documented():
    from destiny.cli.main import build_parser
    from destiny.config import LayerConfig, NetworkConfig
    from destiny.config import fields as f

    json_doc = (REPO / "docs/json-reference.md").read_text(encoding="utf-8")
    for cls in (NetworkConfig, LayerConfig):
        for field in f.json_fields(cls):
            assert f"`{field.metadata['json']}`" in json_doc
    cli_doc = (REPO / "docs/cli-reference.md").read_text(encoding="utf-8")
    commands = next(a for a in build_parser()._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    for name in commands.choices:
        assert f"## destiny {name}" in cli_doc
