"""`python -m server.cli` is `derflex`."""

from server.cli import main

main(prog_name="derflex")
