import sys

from scalpel.cli import main

sys.exit(main())
