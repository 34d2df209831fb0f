"""Experiment grids: compression methods x byte budgets x seeds (`runner`), and their table (`summary`)."""

from mec_jax.experiments.runner import cell_name, load_sweep, records_on_disk, run_grid

__all__ = ["cell_name", "load_sweep", "records_on_disk", "run_grid"]
