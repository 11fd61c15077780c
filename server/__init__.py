"""chatlead: lead-capture backend for website chat."""

__version__ = "0.1.0"
