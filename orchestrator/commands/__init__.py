"""The ``mm1`` verbs of the sweep layer, one module per subject: ``sweep`` (validate, plan, run, status),
``trial`` (train, eval) and ``registry``. Each module's ``add_commands(subparsers)`` adds its verbs to the parser
of ``orchestrator.cli``; the read-back verbs live with their subject, in ``dashboards.commands``."""
