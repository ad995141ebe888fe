"""`python -m ddbbridge.kopf_app [options]`: the operator, same options as `ddbbridge operator`."""

from __future__ import annotations

import sys

from ddbbridge.kopf_app.entry import main

if __name__ == "__main__":
    sys.exit(main())
