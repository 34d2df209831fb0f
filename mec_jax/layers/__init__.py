"""Embedding modules (full tables, CodebookEmbed) and shared blocks."""
