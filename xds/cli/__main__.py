import sys

from xds.cli.main import main

sys.exit(main())
