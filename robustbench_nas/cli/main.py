"""The ``rbnas`` command: one click group; subcommands are discovered in ``robustbench_nas.cli.commands``.

Each module there that defines a ``click.Command`` (or ``click.Group``) named ``command`` is added, so a part of
the project adds its command by adding one file.

Errors are handled here, once for every command (:class:`RbnasGroup`): a bad input (a usage error, or one of
:data:`KNOWN_ERRORS` raised by the library: a malformed architecture, a store of another schema, a missing file,
a corrupt checkpoint...) prints one line ``Error: <what is wrong>`` on stderr and exits with code 2; an
unexpected exception prints one line naming it and exits with 1, and ``rbnas --debug`` (or ``RBNAS_DEBUG=1``)
shows its traceback instead. Every leaf command also gets ``--threads`` (:func:`.common.threads_option`) if it
does not declare it itself, so no command runs with torch's oversubscribing default.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
from typing import Any

import click

from .. import __version__
from . import commands as _commands_pkg
from .common import CLIError, one_line, threads_option


def _known_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "bad input" (exit 2), not "bug" (exit 1)."""
    import zipfile

    from ..data import DataError
    from ..search_spaces import ArchitectureError
    from ..storage import StoreError
    from ..training.checkpoint import CheckpointError

    out: list[type[BaseException]] = [
        StoreError, DataError, ArchitectureError, CheckpointError, ValueError, KeyError, IndexError,
        FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
        zipfile.BadZipFile, EOFError, UnicodeDecodeError, json.JSONDecodeError,
    ]
    try:
        import yaml

        out.append(yaml.YAMLError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import pickle

        out.append(pickle.UnpicklingError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(out)


def describe_error(e: BaseException) -> str:
    """One line naming the problem of a known error (the path of a file error, the key of a KeyError)."""
    if isinstance(e, OSError) and getattr(e, "filename", None) is not None and e.strerror:
        return f"{e.strerror}: {e.filename}"
    if isinstance(e, KeyError) and e.args:
        return one_line(str(e.args[0]))
    text = one_line(str(e)) if str(e) else type(e).__name__
    if isinstance(e, (EOFError, UnicodeDecodeError)) or type(e).__module__.startswith(("yaml", "zipfile", "pickle")):
        return f"{type(e).__name__}: {text}"  # these messages do not say what kind of problem they are
    return text


def _debug(ctx: click.Context | None) -> bool:
    if os.environ.get("RBNAS_DEBUG", "").strip() not in ("", "0"):
        return True
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.meta.get("rbnas.debug"))


class RbnasGroup(click.Group):
    """The top-level group: maps known errors to one line and exit code 2 (see the module docstring)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:  # parse errors of subcommands: one line, not the usage block
            raise CLIError(_usage_line(e)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except _known_errors() as e:
            if _debug(ctx):
                raise
            raise CLIError(describe_error(e)) from None
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except Exception as e:  # noqa: BLE001  (a bug: say so in one line; --debug shows the traceback)
            if _debug(ctx):
                raise
            err = click.ClickException(
                f"internal error: {type(e).__name__}: {one_line(str(e))} (run `rbnas --debug ...` for the traceback)")
            err.exit_code = 1
            raise err from None

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise CLIError(_usage_line(e)) from None


def _usage_line(e: click.UsageError) -> str:
    where = e.ctx.command_path if e.ctx is not None else "rbnas"
    return f"{e.format_message()} (see `{where} --help`)"


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["rbnas.debug"] = value
    return value


@click.group(cls=RbnasGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="rbnas")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--debug", is_flag=True, is_eager=True, expose_value=False, callback=_set_debug,
              help="Show the Python traceback of an error (also: RBNAS_DEBUG=1).")
def cli(verbose: int) -> None:
    """robustbench-nas: build robustness datasets for NAS search spaces and rank the measures that predict them."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _leaf_commands(cmd: click.Command) -> list[click.Command]:
    if isinstance(cmd, click.Group):
        return [leaf for sub in cmd.commands.values() for leaf in _leaf_commands(sub)]
    return [cmd]


def _ensure_threads(cmd: click.Command) -> None:
    """Give every leaf command ``--threads`` (set, not passed on) unless it declares its own."""
    for leaf in _leaf_commands(cmd):
        if not any("--threads" in getattr(p, "opts", ()) for p in leaf.params):
            threads_option(expose=False)(leaf)  # click.option appends to a Command's params


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        cmd = getattr(mod, "command", None)
        if isinstance(cmd, click.Command):
            _ensure_threads(cmd)
            cli.add_command(cmd)


_discover()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="rbnas")


if __name__ == "__main__":
    main()
