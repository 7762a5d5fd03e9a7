import sys

from spectron_kit.cli import main

sys.exit(main())
