"""Sweeps: a series or a search of experiments run as one command (cnnlab sweep)."""
