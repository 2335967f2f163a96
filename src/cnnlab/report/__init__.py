"""Reports: figures and tables made from run results."""
