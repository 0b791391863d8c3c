"""The package version, apart so that modules below the package facade can read it."""
__version__ = "0.1.0"
