"""Shipped meter profiles (TOML data files); a package so that setuptools ships them."""
