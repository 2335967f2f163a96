"""Logging runs to MLflow and TensorBoard besides their run folder (the ``tracking:`` section).

The run folder stays the record: what MLflow holds can always be rebuilt from it with
``cnnlab sync``, which is also how a run whose server was down gets uploaded later.
"""

from cnnlab.track.mlflow_run import MlflowTracker, child_tags, parent_run, sync_run
from cnnlab.track.session import Tracking, open_tracking

__all__ = ["MlflowTracker", "Tracking", "child_tags", "open_tracking", "parent_run", "sync_run"]
