"""`python -m fleet_rlm.cli`: the `fleet` command."""

from . import main

main()
