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


def fail(message: str) -> None:
    """Abort the command with a one-line error (exit code 2)."""
    raise click.UsageError(message)


def check_n_images(n: int | None, available: int, where: str, *, param: str = "n_images", flag: str = "--n") -> None:
    """No silent caps: ``--n`` above the images ``available`` in ``where`` fails when typed on the command line,
    and is reported on stderr when it is the default (then all images are used)."""
    if not n or n <= available:
        return
    src = click.get_current_context().get_parameter_source(param)
    if src == click.core.ParameterSource.COMMANDLINE:
        fail(f"{flag} {n}: {where} has only {available} images ({flag} 0: all of them)")
    click.echo(f"note: {where} has {available} images, fewer than the default {flag} {n}: using all of them", err=True)
