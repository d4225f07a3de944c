"""`python -m qtransfer`."""
import sys

from qtransfer.cli import main

sys.exit(main())
