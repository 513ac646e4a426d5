"""The CLI's consoles: soft-wrapped so piped output (CI logs, grep) keeps one line per message.

Emoji codes are off: names like ``ort:O2:`` in a message would otherwise print as an emoji.
"""

from rich.console import Console

console = Console(soft_wrap=True, emoji=False)
err_console = Console(stderr=True, soft_wrap=True, emoji=False)
