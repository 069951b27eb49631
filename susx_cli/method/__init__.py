"""The method's math: pure tensor functions, no I/O (docs/METHOD.md), and the one registry of methods
(method/registry.py); importing this package loads no tensor library."""
