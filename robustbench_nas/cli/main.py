"""The ``rbnas`` command: one click group; subcommands are discovered in ``robustbench_nas.cli.commands``.

Each module there that defines a ``click.Command`` (or ``click.Group``) named ``command`` is added, so a part of
the project adds its command by adding one file.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil

import click

from .. import __version__
from . import commands as _commands_pkg


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="rbnas")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """robustbench-nas: build robustness datasets for NAS search spaces and rank the measures that predict them."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        cmd = getattr(mod, "command", None)
        if isinstance(cmd, click.Command):
            cli.add_command(cmd)


_discover()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="rbnas")


if __name__ == "__main__":
    main()
