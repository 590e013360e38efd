"""Data: sources (built-in generator, local files), prompt templates, tokenisation with label masks."""
