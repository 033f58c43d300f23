"""``python -m sparsesim`` runs the command-line interface."""

from sparsesim.cli import main

main()
