"""``python -m diemcau ...``: the same as the installed ``diemcau`` command."""

import sys

from diemcau.cli import main

sys.exit(main())
