"""The `otphsm` command line: translates arguments, assembles adapters, prints for people."""
