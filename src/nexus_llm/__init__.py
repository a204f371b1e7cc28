"""Nexus LLM: from raw text to a served, monitored, custom language model."""

__version__ = "0.1.0"
