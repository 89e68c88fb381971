"""``mm1 registry [--json]`` and ``mm1 schema [--json | --markdown]`` (DESIGN.md, "CLI"): what a trial config can
name (the registered components and stages) and every field it has (type, default, bounds, description)."""

from __future__ import annotations

import argparse
import json

from mm1core.cli_common import EXIT_OK


def add_commands(verbs: argparse._SubParsersAction) -> None:
    registry = verbs.add_parser("registry", help="names of encoders, connectors, decoders, data sources")
    registry.add_argument("--json", action="store_true")
    registry.set_defaults(func=cmd_registry)

    schema = verbs.add_parser("schema", help="every trial config field: type, default, bounds, description")
    printed = schema.add_mutually_exclusive_group()
    printed.add_argument("--json", action="store_true", help="as a JSON list")
    printed.add_argument("--markdown", action="store_true", help="as the Markdown page docs/config.md")
    schema.set_defaults(func=cmd_schema)


def cmd_registry(args: argparse.Namespace) -> int:
    from mm1core.catalog import catalog, format_catalog

    entries = catalog()
    print(json.dumps(entries, indent=1) if args.json else format_catalog(entries))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from mm1core.schema import as_json, as_markdown, as_text, reference

    docs = reference()
    print(as_json(docs) if args.json else as_markdown(docs).rstrip("\n") if args.markdown else as_text(docs))
    return EXIT_OK
