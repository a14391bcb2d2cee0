import sys

from zsvc_pl.cli import console

sys.exit(console())
