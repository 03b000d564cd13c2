"""Conversations and their messages: list, search, rename, delete, export/import."""
