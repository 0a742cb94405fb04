"""Entry point of the simulator: ``python3 -m rigctl.simgpu.tool``, ``python3 <this
directory>`` (a checkout), and the installed single-file tool: a zip archive (zipapp) with
this file at its root and the package as ``rigctl_simgpu/`` (``rigctl.simgpu.install``
builds it). The program name (``nvidia-smi`` or ``rigctl-simgpu``) picks the command set."""

import os
import sys


def _main():
    if __package__:
        from .cli import main

        return main
    try:
        from rigctl_simgpu.cli import main  # the installed archive

        return main
    except ImportError:
        pass
    # a directory of the checkout: load it under the archive's package name
    import importlib.util

    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]  # its module names (profile, state, ...) must not shadow the stdlib
    spec = importlib.util.spec_from_file_location(
        "rigctl_simgpu", os.path.join(here, "__init__.py"), submodule_search_locations=[here]
    )
    package = importlib.util.module_from_spec(spec)
    sys.modules["rigctl_simgpu"] = package
    spec.loader.exec_module(package)
    from rigctl_simgpu.cli import main

    return main


if __name__ == "__main__":
    sys.exit(_main()())
