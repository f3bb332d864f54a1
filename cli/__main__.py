"""``python -m hyperet.cli``: the ``hyperet`` command (what ``torchrun -m hyperet.cli`` runs)."""

from hyperet.cli.main import main

main(prog_name="hyperet")
