"""The store: run folders, written atomically, with everything needed to trace a result."""

from cnnlab.store.paths import safe_output_path, safe_run_path
from cnnlab.store.run import (environment, new_run_dir, open_run, read_history, read_json,
                              save_weights, write_csv, write_json, write_text, write_yaml)

__all__ = ["environment", "new_run_dir", "open_run", "read_history", "read_json", "safe_output_path",
           "safe_run_path", "save_weights",
           "write_csv", "write_json", "write_text", "write_yaml"]
