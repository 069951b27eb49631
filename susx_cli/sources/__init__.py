"""Support-set sources for `susx curate`: folder (existing images), sd (text-to-image), laion, pool.

``susx_cli.sources.registry.SOURCES`` maps each name to its options dataclass and factory; see there how
to add a source.
"""
