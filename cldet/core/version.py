"""cldet's version, in the ground floor so that every layer (the export manifest, the package root) reads one value
without importing the package root, which imports the app layer."""

__version__ = "0.1.0"
__all__ = ["__version__"]
