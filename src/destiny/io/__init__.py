"""Files in and out: atomic writes, and network files in DSSTNE's NetCDF layout."""
