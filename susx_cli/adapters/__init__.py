"""Thin adapters over third-party libraries, imported lazily so `susx --help` stays light."""
