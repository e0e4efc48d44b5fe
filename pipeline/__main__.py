"""`python -m pipeline ...` is the same as the `ml-pipeline` console script."""

import sys

from pipeline.cli import main

sys.exit(main())
