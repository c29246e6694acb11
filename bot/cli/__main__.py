"""`python -m bot.cli`: the same entry point as the installed `bot` command."""

import sys

from bot.cli.main import main

sys.exit(main())
