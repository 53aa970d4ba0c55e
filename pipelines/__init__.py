"""The distributed pipeline behind ``rbnas run``: protocols, stages and the Dask runner (see ``docs/pipeline.md``).

Example:
    >>> from robustbench_nas.pipelines import get_protocol, run_pipeline
    >>> report = run_pipeline("runs/tiny.zarr", get_protocol("tiny"))   # doctest: +SKIP
"""

from .protocol import (
    CIFAR10C_CORRUPTIONS,
    ProtocolConfig,
    get_protocol,
    list_protocols,
    parse_archs,
    parse_task,
    register_protocol,
    task_cells,
)
from .runner import RunReport, execute_unit, headline, make_client, plan_units, prepare_store, run_pipeline, summary_rows
from .tasks import task_blocks
from .stages import StageContext, StageDef, derived_seed, get_stage, list_stages, register_stage, with_dependencies

__all__ = [
    "CIFAR10C_CORRUPTIONS", "ProtocolConfig", "RunReport", "StageContext", "StageDef", "derived_seed",
    "execute_unit", "get_protocol", "get_stage", "headline", "list_protocols", "list_stages", "make_client",
    "parse_archs", "parse_task", "plan_units", "prepare_store", "register_protocol", "register_stage",
    "run_pipeline", "task_blocks", "task_cells", "summary_rows", "with_dependencies",
]
