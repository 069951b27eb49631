"""Stages as plain functions: each reads artifacts, writes one, and returns a result the CLI renders."""
