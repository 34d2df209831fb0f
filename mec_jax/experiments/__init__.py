"""Experiment grids: compression methods x byte budgets x seeds (`runner`), their table
(`summary`), and whether two finished runs differ beyond the test set's noise (`significance`)."""

from mec_jax.experiments.runner import cell_name, load_sweep, records_on_disk, run_grid

__all__ = ["cell_name", "load_sweep", "records_on_disk", "run_grid"]
