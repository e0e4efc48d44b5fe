"""`python -m pipeline ...` (what dvc.yaml's stages run) is the `ml-pipeline` console script."""

import sys

from pipeline.cli import entry

sys.exit(entry())
