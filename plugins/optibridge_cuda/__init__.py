"""optibridge backend: cuda (not implemented yet: it detects and reports what this machine has)."""
