"""Write or check the files generated from the rig variable schema
(rigctl/inventory/schema.py): the roles' ``meta/argument_specs.yml`` and docs/inventory.md.

    python -m rigctl.inventory.generate --write-argspecs roles --write-docs docs/inventory.md
    python -m rigctl.inventory.generate --check-argspecs roles --check-docs docs/inventory.md

A check exits 1 when a file differs from what would be written (the unit tests run both)
and prints the command that fixes it; a roles directory that does not exist exits 2.
"""

from __future__ import annotations

import argparse
import sys

PROG = "python -m rigctl.inventory.generate"


def main(argv: list[str] | None = None) -> int:
    import os

    from rigctl.inventory import argspecs, docs

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Generate or check the files derived from the rig variable schema "
        "(rigctl/inventory/schema.py).",
    )
    parser.add_argument("--write-argspecs", metavar="ROLES_DIR",
                        help="write meta/argument_specs.yml of every rigctl role under ROLES_DIR")
    parser.add_argument("--check-argspecs", metavar="ROLES_DIR",
                        help="exit 1 when a role's argument specs or defaults differ from the "
                        "schema")
    parser.add_argument("--write-docs", metavar="FILE", help="write the inventory reference")
    parser.add_argument("--check-docs", metavar="FILE",
                        help="exit 1 when FILE differs from the inventory reference")
    args = parser.parse_args(argv)
    if not any(vars(args).values()):
        parser.print_help()
        return 2
    for roles_dir in (args.write_argspecs, args.check_argspecs):
        if roles_dir and not os.path.isdir(roles_dir):
            print(f"error: roles directory not found: {roles_dir}", file=sys.stderr)
            print("  fix: give the roles/ directory of the checkout, like roles", file=sys.stderr)
            return 2
    rc = 0
    if args.write_argspecs:
        for path in argspecs.write_argspecs(args.write_argspecs):
            print(f"wrote {path}")
    if args.write_docs:
        docs.write_docs(args.write_docs)
        print(f"wrote {args.write_docs}")
    for path, check, write_option in ((args.check_argspecs, argspecs.check_argspecs,
                                       "--write-argspecs"),
                                      (args.check_docs, docs.check_docs, "--write-docs")):
        if not path:
            continue
        problems = check(path)
        for p in problems:
            print(p)
        if problems:
            print(f"fix: {PROG} {write_option} {path}")
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
