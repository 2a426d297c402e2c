"""``python -m pyireg``: the same command line as ``pyireg``."""
import sys

from .cli import main

sys.exit(main())
