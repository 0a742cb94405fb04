"""rigctl: provision and verify multi-GPU rigs over SSH.

This file must stay importable with the standard library alone: Ansible ships
``rigctl.core`` (and so this package's ``__init__``) to the managed hosts as module_utils.
"""

__version__ = "0.1.0"
