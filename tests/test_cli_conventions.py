"""Every subcommand follows the same conventions (walked from the click tree, so a new command is checked too).

- ``--device`` defaults to ``auto`` everywhere it exists;
- a command that writes an ``--out`` has ``--force`` (and refuses to replace without it: tests/test_bad_input.py);
- a command that prints results has ``--json`` (machine output on stdout; text by default);
- a command that reads a store takes it as its first argument (``run`` keeps ``--store`` as an alias);
- help texts render as written (no ``%%`` left from printf-style escaping);
- an option the issue found with different defaults (``--device``, ``--encodings``, progress, seeds, threads) has
  one default in every command that has it.
"""

from __future__ import annotations

from typing import Iterator

import click
import pytest
from click.testing import CliRunner

from robustbench_nas.cli.main import cli

#: commands whose output is a file or a listing (CSV / image / store), not a result to read: no --json needed
NO_JSON = {"corrupt show", "corrupt make", "export", "migrate", "space list", "data list"}
#: commands that read an existing store
READS_STORE = {"analyze", "export", "predict", "status", "run"}


def _walk(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _walk(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(_walk(cli))


def _opts(cmd: click.Command) -> dict[str, click.Parameter]:
    return {o: p for p in cmd.params for o in getattr(p, "opts", ())}


def test_walk_finds_every_command() -> None:
    assert {"run", "analyze", "predict", "proxies", "attack", "import jung2023", "space show"} <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_conventions(name: str) -> None:
    cmd = COMMANDS[name]
    opts = _opts(cmd)
    if "--device" in opts:
        assert opts["--device"].default == "auto", f"{name}: --device defaults to {opts['--device'].default!r}"
    if "--out" in opts:
        assert "--force" in opts, f"{name} writes --out but has no --force"
    if name not in NO_JSON:
        assert "--json" in opts, f"{name} prints results but has no --json"
    if name in READS_STORE:
        first = next((p for p in cmd.params if isinstance(p, click.Argument)), None)
        assert first is not None and "store" in first.name, f"{name}: the store is not the first argument"
    text = CliRunner().invoke(cli, [*name.split(), "--help"]).output
    assert "%%" not in text, f"{name} --help shows a doubled percent sign"


#: options whose default must be one across commands (batch sizes, image counts, splits differ with the work, on
#: purpose; these do not)
SAME_DEFAULT = ("--device", "--encodings", "--progress", "--seed", "--threads", "--json", "--force")


@pytest.mark.parametrize("option", SAME_DEFAULT)
def test_same_option_same_default(option: str) -> None:
    defaults = {name: _opts(cmd)[option].default for name, cmd in COMMANDS.items() if option in _opts(cmd)}
    if option in ("--device", "--progress", "--json", "--seed"):
        assert len(defaults) >= 2, (option, defaults)  # the check compares something
    assert len({repr(v) for v in defaults.values()}) <= 1, f"{option} defaults differ: {defaults}"


def test_run_takes_the_store_as_argument_or_option(tmp_path) -> None:
    r = CliRunner().invoke(cli, ["run", str(tmp_path / "a.zarr"), "--store", str(tmp_path / "b.zarr"),
                                 "--protocol", "tiny"])
    assert r.exit_code == 2 and "two stores given" in r.output
    r = CliRunner().invoke(cli, ["run", "--protocol", "tiny"])
    assert r.exit_code == 2 and "missing STORE" in r.output
