"""Sweeps: a series or a search of experiments as one command (``cnnlab sweep``), on Optuna.

``load_sweep(file)`` reads and checks a sweep file, ``run_sweep(loaded)`` runs its trials
(each an ordinary run folder under ``<runs_dir>/<name>/trial-NNN/``) with one or more
workers sharing an Optuna study, and ``write_sweep_report(folder)`` writes its report page.
"""

from cnnlab.sweep.config import LoadedSweep, SweepConfig, load_sweep
from cnnlab.sweep.runner import SweepOutcome, run_sweep

__all__ = ["LoadedSweep", "SweepConfig", "SweepOutcome", "load_sweep", "run_sweep"]
