"""`python -m xds.agent`: the mecha agent alone (see xds/agent/cli.py)."""

import sys

from xds.agent.cli import main

sys.exit(main())
