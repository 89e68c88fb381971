"""``mm1 registry [--json]`` (DESIGN.md, "CLI"): the names a trial config can use, per component kind."""

from __future__ import annotations

import argparse
import json

from mm1core.cli_common import EXIT_OK


def add_commands(verbs: argparse._SubParsersAction) -> None:
    registry = verbs.add_parser("registry", help="names of encoders, connectors, decoders, data sources")
    registry.add_argument("--json", action="store_true")
    registry.set_defaults(func=cmd_registry)


def cmd_registry(args: argparse.Namespace) -> int:
    from mm1core.catalog import catalog, format_catalog

    entries = catalog()
    print(json.dumps(entries, indent=1) if args.json else format_catalog(entries))
    return EXIT_OK
