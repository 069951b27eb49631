"""Everything susx sends over the network goes through ``guarded_http`` (see its docstring).

``clients`` lists every outbound client with its body-size cap; ``fetch`` keeps files fetched by URL
in the user cache.
"""
