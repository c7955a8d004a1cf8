"""One module per ``glean-sr`` subcommand; each exposes ``register(subparsers)``."""
