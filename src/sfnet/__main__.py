import sys

from sfnet.cli import main

sys.exit(main())
