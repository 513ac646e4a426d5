"""CLI commands, one module each; ``optibridge.cli`` registers them on the app."""
