"""``python -m v2gtool`` runs the command-line interface."""

from v2gtool.cli.main import main

main()
