"""``python -m mtsnn ...`` runs the command line (``mtsnn --help``)."""

import sys

from mtsnn.cli import main

sys.exit(main())
