"""One module per method, each declaring its ``SPEC`` (method/spec.py); the math they call lives in
method/tipx.py, method/gda.py, method/search.py and method/kfold.py and is imported when first used."""
