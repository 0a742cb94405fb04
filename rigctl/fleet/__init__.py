"""The fleet side of rigctl: `rigctl fleet status` (status.py), `rigctl fleet update`
(update.py: rolling, canaried, resumable rollouts), the records rigctl keeps
about rigs under $RIGCTL_HOME (records.py), and the Ansible collection build
(collection.py)."""
