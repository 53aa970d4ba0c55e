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
