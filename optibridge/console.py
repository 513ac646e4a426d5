"""The CLI's consoles: soft-wrapped so piped output (CI logs, grep) keeps one line per message."""

from rich.console import Console

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
