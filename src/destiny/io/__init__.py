"""Files in and out: atomic writes (``atomic``), and network files in DSSTNE's NetCDF layout
(``network_file``: read_network, write_network; ``network_layout`` / ``network_decode``: the
attributes). Import the submodules directly; this package imports nothing (config imports
``io.atomic``)."""
