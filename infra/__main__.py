"""``python -m infra`` = the ``cadenza`` command."""

from infra.cli import main

main()
