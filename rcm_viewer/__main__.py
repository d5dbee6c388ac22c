"""`python -m rcm_viewer` is the same program as the `rcm-viewer` command."""

import sys

from rcm_viewer.cli import main

sys.exit(main())
