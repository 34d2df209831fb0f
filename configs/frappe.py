"""Re-export of `mec_jax/configs/frappe.py` (the source, shipped with the package); kept so that
`--config=configs/frappe.py` and `from configs import frappe` work in a checkout."""

from mec_jax.configs.frappe import get_config as get_config
