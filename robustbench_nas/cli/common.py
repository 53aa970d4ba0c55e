"""Options and helpers shared by ``rbnas`` subcommands."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click


def dataset_options(default: str = "digits") -> Callable[[Callable], Callable]:
    """``--dataset NAME --data-root PATH`` (the root, or the file for ``npz``)."""

    def deco(f: Callable) -> Callable:
        f = click.option(
            "--data-root",
            type=click.Path(),
            default=None,
            help="Dataset root folder (or the .npz file for --dataset npz). Not needed for 'digits'.",
        )(f)
        f = click.option("--dataset", default=default, show_default=True, help="Dataset name (see `rbnas data list`).")(f)
        return f

    return deco


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays, paths and dataclasses."""
    import dataclasses
    from pathlib import Path

    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (numpy values, paths and dataclasses converted)."""
    json.dump(obj, sys.stdout, default=json_default, indent=2)
    sys.stdout.write("\n")


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs (``--set``), values read as JSON when possible (``epochs=3``, ``amp=null``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            fail(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


class CLIError(click.ClickException):
    """A bad input named in one line: ``Error: <message>`` on stderr, exit code 2, no usage text, no traceback."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(message: str) -> str:
    """``message`` on one line (an error shown to a user is one line; details follow ``;``)."""
    parts = [p.strip() for p in str(message).strip().splitlines() if p.strip()]
    return "; ".join(parts) if parts else "(no message)"


def fail(message: str) -> None:
    """Abort the command with a one-line error (exit code 2)."""
    raise CLIError(message)


# ---- threads ------------------------------------------------------------------------------------------------------
def _apply_threads(ctx: click.Context, param: click.Parameter, value: int | None) -> int:
    from ..utils import default_threads, set_torch_threads

    if value is not None and value < 1:
        raise click.BadParameter(f"must be >= 1, got {value}", ctx=ctx, param=param)
    per_task = ctx.meta.get("rbnas.threads_per_task", False)
    try:
        n = value if value is not None else (1 if per_task else default_threads())
    except ValueError as e:  # a bad $RBNAS_TORCH_THREADS
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    # the process itself; with per_task the value is handed to the pipeline's workers as well
    set_torch_threads(1 if per_task else n)
    return n


def threads_option(per_task: bool = False, expose: bool = True) -> Callable[[Callable], Callable]:
    """``--threads N``: torch / BLAS threads, set as soon as the option is parsed (before any work).

    Arguments:
        per_task: the command hands work to pipeline workers (``rbnas run``): the default is 1 thread per task
            (one worker process per core), and the client process itself uses 1.
        expose: pass the value to the command function as ``threads`` (``False``: only set it).

    The default otherwise is :func:`robustbench_nas.utils.default_threads`: ``min(cores this process may use,
    8)`` (``os.sched_getaffinity``, so a SLURM allocation or ``taskset`` is respected), a fixed rule (never the
    load average: same command, same bits), or ``$RBNAS_TORCH_THREADS`` (a number, or ``idle`` for the node's idle
    cores now). torch's own default, every core of the node, oversubscribes a shared machine (the same PGD
    evaluation 9.5x slower with 2 threads than 1 on a loaded 2-core node): on a busy node pass ``--threads``.
    """
    from ..utils import THREAD_CAP

    if per_task:
        text = "Torch threads per pipeline task (each worker process runs one task at a time)."
        default_text = "1"
    else:
        text = "Torch / BLAS threads of this command."
        default_text = f"min(usable cores, {THREAD_CAP}), or $RBNAS_TORCH_THREADS (a number or 'idle')"

    def deco(f: Callable) -> Callable:
        def callback(ctx: click.Context, param: click.Parameter, value: int | None) -> int:
            ctx.meta["rbnas.threads_per_task"] = per_task
            return _apply_threads(ctx, param, value)

        return click.option(
            "--threads", type=int, default=None, callback=callback, expose_value=expose, is_eager=False,
            show_default=default_text, help=text,
        )(f)

    return deco


# ---- outputs --------------------------------------------------------------------------------------------------------
def device_option(help: str = "") -> Callable[[Callable], Callable]:
    """``--device``, the same everywhere: ``auto`` (CUDA when present, else the CPU), ``cpu``, ``cuda``, ``cuda:1``."""
    text = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N." + (f" {help}" if help else "")
    return click.option("--device", default="auto", show_default=True, help=text)


def force_option(what: str = "the output", help: str | None = None) -> Callable[[Callable], Callable]:
    """``--force``: allow replacing an existing output (never anything else)."""
    return click.option("--force", is_flag=True, help=help or f"Replace {what} if it exists (otherwise an error).")


def check_output_file(path: str | None, force: bool, option: str = "--out") -> None:
    """Refuse an output file that exists (unless ``force``) or is a folder; call before any work is done."""
    if path is None:
        return
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        fail(f"{option} {path} is a folder, expected a file path")
    if p.exists() and not force:
        fail(f"{option} {path} already exists; pass --force to replace it")
    if p.parent.exists() and not p.parent.is_dir():
        fail(f"{option} {path}: {p.parent} is not a folder")


def check_output_files(folder: str, names: list[str], force: bool, option: str = "--out") -> None:
    """Refuse an output folder that is a file, or holds any of ``names`` (unless ``force``)."""
    from pathlib import Path

    d = Path(folder)
    if d.exists() and not d.is_dir():
        fail(f"{option} {folder} is a file, expected a folder")
    present = [n for n in names if (d / n).exists()]
    if present and not force:
        fail(f"{option} {folder} already holds {', '.join(present[:3])}"
             f"{' ...' if len(present) > 3 else ''}; pass --force to replace them (or choose a new folder)")


def check_output_dir(folder: str, force: bool, marker: str, option: str = "--out",
                     keep: tuple[str, ...] = ()) -> None:
    """Refuse an output folder that is a file, or that holds anything, unless ``force``; with ``force`` the folder is
    emptied first, so that no file of an earlier output (a CSV of a section not run this time) is left beside the
    new one. Call before any work is done.

    Emptying is refused for folders that are obviously not outputs: the file-system root, the home folder, the
    current directory or any of its parents, and any folder that holds one of the ``keep`` paths (e.g. the store
    being read). ``marker`` names the file an earlier output of the command has, for the error message.
    """
    import shutil
    from pathlib import Path

    d = Path(folder)
    if d.exists() and not d.is_dir():
        fail(f"{option} {folder} is a file, expected a folder")
    if not d.is_dir() or not any(d.iterdir()):
        return
    if not force:
        what = "an earlier output of this command" if (d / marker).exists() else f"other files (no {marker})"
        fail(f"{option} {folder} already holds {what}; choose an empty or new folder, or pass --force to empty "
             "and replace it")
    real = d.resolve()
    cwd = Path.cwd().resolve()
    protected = {Path(real.anchor), Path.home().resolve(), cwd, *cwd.parents}
    if real in protected or any(Path(k).resolve() == real or real in Path(k).resolve().parents for k in keep):
        fail(f"{option} {folder}: refusing to empty it (it is not an output folder: {real}); choose another folder")
    for child in real.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def check_n_images(n: int | None, available: int, where: str, *, param: str = "n_images", flag: str = "--n") -> None:
    """No silent caps: ``--n`` above the images ``available`` in ``where`` fails when typed on the command line.
    The default means "this many, or the whole split when smaller" (said in the option's help; the output records
    the images used); it is logged at INFO (``-v``) so that stderr keeps one line per error."""
    if not n or n <= available:
        return
    src = click.get_current_context().get_parameter_source(param)
    if src == click.core.ParameterSource.COMMANDLINE:
        fail(f"{flag} {n}: {where} has only {available} images ({flag} 0: all of them)")
    import logging

    logging.getLogger("robustbench_nas.cli").info("%s has %d images, fewer than the default %s %d: using all of them",
                                                  where, available, flag, n)


def space_option(default: str | None = "nb201") -> Callable[[Callable], Callable]:
    """``--space NAME``: the search space (``nb201``, ``nats-sss``; see ``rbnas space --help``)."""
    from ..search_spaces import list_search_spaces

    helptext = f"Search space: {' | '.join(list_search_spaces())}."
    if default is None:
        helptext += " Default: the protocol's / store's own (nb201 unless it says otherwise)."
    return click.option("--space", "space_name", default=default, show_default=default is not None, help=helptext)


def resolve_space(name: str) -> Any:
    """The search space ``name`` (exit 2 naming the known spaces if it is unknown)."""
    from ..search_spaces import get_search_space

    try:
        return get_search_space(name)
    except KeyError as e:
        fail(str(e.args[0]))
