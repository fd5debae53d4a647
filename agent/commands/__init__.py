"""Subcommands that belong to no single stage (each a module: HELP, add_arguments, run)."""
