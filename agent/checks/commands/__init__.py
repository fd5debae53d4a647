"""The checks' subcommands: ``alerts``, ``ack``, ``stats`` (each a module: HELP, add_arguments, run)."""
