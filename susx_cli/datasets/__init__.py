"""Built-in datasets: class names, photo templates, where their splits come from."""
