"""The image options of the evaluation commands (``--subset-seed``, ``--indices``, ``--show-images``) and the one
call that turns them into the images to evaluate: the pipeline's rule (:mod:`robustbench_nas.data.subsets`), so a
command and a pipeline stage with the same split, size and subset seed evaluate the same images."""

from __future__ import annotations

from typing import Any, Callable

import click

from .common import check_n_images, echo_json, fail


def image_options(purpose: str) -> Callable[[Callable], Callable]:
    """``--subset-seed S``, ``--indices LIST|@FILE`` and ``--show-images`` for a command evaluating ``purpose``
    images (its split and size options stay the command's own)."""

    def deco(f: Callable) -> Callable:
        f = click.option("--show-images", "show_images_only", is_flag=True,
                         help="Print the chosen images (split, n, subset seed, indices, sha256) as JSON and exit "
                              "without computing anything.")(f)
        f = click.option("--indices", "indices_text", default=None, metavar="LIST|@FILE",
                         help="Explicit images: positions in the split, a comma list or @FILE (one per line, # "
                              "comments), used in the given order instead of the seeded subset.")(f)
        f = click.option("--subset-seed", default=0, show_default=True, type=int,
                         help=f"Seed of the class-balanced image subset: the pipeline's subset_seed (same split, "
                              f"size and subset seed: the {purpose} images a pipeline stage evaluates).")(f)
        return f

    return deco


def choose_cli_images(data: Any, n: int | None, subset_seed: int, indices_text: str | None, *, purpose: str,
                      where: str, count_param: str = "n_images", count_flag: str = "--n") -> Any:
    """The :class:`~robustbench_nas.data.subsets.ImageSubset` of a command: explicit ``--indices`` or the seeded
    rule on ``n`` images of ``data`` (``None`` or 0: the whole split). Bad input ends the command with one line.

    Arguments:
        data: the loaded :class:`~robustbench_nas.data.DataSplit`.
        n: the command's image count (typed or default); ignored with ``--indices`` unless typed (then it must
            equal their count).
        subset_seed, indices_text: ``--subset-seed``, ``--indices``.
        purpose: ``proxies``, ``clean``, ``attacks``, ``corruptions`` or ``measures`` (recorded).
        where: what ``data`` is, for messages (``split 'test' of digits``).
        count_param, count_flag: the count option's parameter name and flag.
    """
    from ..data import DataError
    from ..data.subsets import choose_images

    n, indices = _request(len(data), n, indices_text, where, count_param, count_flag)
    try:
        return choose_images(data, n, subset_seed, indices, purpose)
    except DataError as e:
        fail(f"{e} ({where})")


def choose_cli_indices(labels: Any, split: str, n: int | None, subset_seed: int, indices_text: str | None, *,
                       where: str, count_param: str = "n_images", count_flag: str = "--n") -> Any:
    """Like :func:`choose_cli_images` from the labels alone (e.g. of CIFAR-10-C files, which hold the test split in
    order): the positions (int64 array) the pipeline's rule or ``--indices`` give."""
    from ..data import DataError
    from ..data.subsets import subset_indices

    n, indices = _request(len(labels), n, indices_text, where, count_param, count_flag)
    try:
        return subset_indices(labels, split, n, subset_seed, indices)
    except DataError as e:
        fail(f"{e} ({where})")


def _request(size: int, n: int | None, indices_text: str | None, where: str, count_param: str,
             count_flag: str) -> tuple[int | None, list[int] | None]:
    """``(n or None, explicit indices or None)`` from the options, failing in one line on a contradiction."""
    from ..data import DataError
    from ..data.subsets import read_indices

    ctx = click.get_current_context()
    if indices_text is None:
        check_n_images(n, size, where, param=count_param, flag=count_flag)
        return (n or None), None
    try:
        indices = read_indices(indices_text)
    except DataError as e:
        fail(str(e))
    if ctx.get_parameter_source(count_param) == click.core.ParameterSource.COMMANDLINE and n and n != len(indices):
        fail(f"{count_flag} {n} but --indices gives {len(indices)} images; give one of them")
    if ctx.get_parameter_source("subset_seed") == click.core.ParameterSource.COMMANDLINE:
        fail("--subset-seed chooses a seeded subset; with --indices the images are given: pass one of them")
    return None, indices


def show_images(chosen: Any, **facts: Any) -> None:
    """Print ``chosen``'s record (and ``facts``: dataset, ...) as JSON: what ``--show-images`` prints."""
    rec = chosen.record()
    if rec["indices"] == "all":
        rec["indices"] = [int(i) for i in chosen.indices]
    echo_json({**facts, "purpose": chosen.purpose, **rec})


__all__ = ["choose_cli_images", "choose_cli_indices", "image_options", "show_images"]
