"""`python -m stepstream` is the `stepstream` command."""

from stepstream.cli.main import main

main()
