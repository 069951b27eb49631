"""Support-set sources for `susx curate`: folder (existing images), sd (text-to-image), laion, pool."""
