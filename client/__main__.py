"""`python -m client` runs the `chat` command."""

import sys

from client.cli import main

sys.exit(main())
