import sys

from zsvc_pl.commands import console

sys.exit(console())
