"""One module per ``rbnas`` subcommand; each defines ``command`` (a click command or group)."""
