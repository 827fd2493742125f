"""One module per serving backend (serving/backend.py's BACKENDS names them); imported only when chosen."""
