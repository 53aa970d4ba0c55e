"""Training: typed profiles, a reproducible trainer on device-resident data, safe checkpoints."""

from .checkpoint import (
    CheckpointError,
    checkpoint_sha256,
    load_checkpoint,
    model_sha256,
    read_checkpoint_meta,
    save_checkpoint,
    save_checkpoint_by_content,
    weights_sha256,
)
from .profiles import TrainProfile, get_profile, list_profiles, register_profile
from .trainer import TrainResult, lr_at, make_scheduler, train_model

__all__ = [
    "CheckpointError",
    "checkpoint_sha256",
    "model_sha256",
    "save_checkpoint_by_content",
    "weights_sha256",
    "TrainProfile",
    "TrainResult",
    "get_profile",
    "list_profiles",
    "load_checkpoint",
    "lr_at",
    "make_scheduler",
    "read_checkpoint_meta",
    "register_profile",
    "save_checkpoint",
    "train_model",
]
