from __future__ import annotations

import sys

from sdbatch.cli import main

sys.exit(main())
