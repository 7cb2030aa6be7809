import sys

from destiny.cli.main import main

sys.exit(main())
