"""Experiment configuration: the YAML schema and how a file becomes a validated config."""

from cnnlab.config.load import apply_override, load_config, validate_config
from cnnlab.config.schema import ExperimentConfig

__all__ = ["ExperimentConfig", "apply_override", "load_config", "validate_config"]
