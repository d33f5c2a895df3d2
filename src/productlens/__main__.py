"""`python -m productlens` runs the command line."""

from __future__ import annotations

import sys

from productlens.cli import main

sys.exit(main())
