"""``python -m trackii_eval``."""

from .cli import main

main()
