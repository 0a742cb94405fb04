"""Logic shared by the CLI, the Ansible modules (shipped to hosts as module_utils) and the
testinfra suites: parsers of GPU tool output, host fact gathering, preflight rules.

Everything under rigctl.core must import only the Python standard library (3.9+ syntax),
because Ansible copies it to the managed hosts.
"""
