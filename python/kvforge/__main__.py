"""python -m kvforge ...: the package's command line (see kvforge.cli)."""
import sys

from .cli import main

sys.exit(main())
