"""The method's math: pure tensor functions, no I/O (METHOD.md)."""
