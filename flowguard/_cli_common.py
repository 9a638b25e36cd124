"""What every CLI command shares: consoles, exit codes, and reporting bad input."""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console

from flowguard.errors import InputError

EXIT_OK, EXIT_DENY, EXIT_INPUT = 0, 1, 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail_input(error: InputError) -> NoReturn:
    for diagnostic in error.diagnostics:
        err.print(diagnostic.render(), markup=False)
    sys.exit(EXIT_INPUT)
