"""The robustbench-nas Zarr (format 3) store: schema, writers and readers (see ``docs/storage.md``).

Example:
    >>> from robustbench_nas.storage import StoreSpec, create_store, open_dataset, to_dataframe
    >>> spec = StoreSpec(archs=[0], arch_str=["|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"], seeds=[0])
    >>> store = create_store("/tmp/doc.zarr", spec, overwrite=True)
    >>> store.write_cell(0, 0, {"clean_accuracy": 0.25}, stage=None)
"""

from .create import software_versions
from .export import to_dataframe
from .root_meta import StoreError, check_schema, ensure_ours
from .schema import (
    DONE,
    FAILED,
    PENDING,
    PER_ARCH_STAGES,
    SCHEMA_VERSION,
    STAGES,
    WEIGHT_STAGES,
    ArraySpec,
    StoreSpec,
    array_specs,
    eps_label,
    stage_arrays,
    weights_hash_array,
)
from .store import RobustnessStore, create_store, open_store
from .xarray_backend import mask_not_done, open_dataset

__all__ = [
    "ArraySpec", "DONE", "FAILED", "PENDING", "PER_ARCH_STAGES", "RobustnessStore", "SCHEMA_VERSION", "STAGES",
    "StoreError", "StoreSpec", "array_specs", "check_schema", "create_store", "ensure_ours", "eps_label", "mask_not_done", "open_dataset",
    "open_store", "software_versions", "stage_arrays", "to_dataframe",
    "WEIGHT_STAGES", "weights_hash_array",
]
