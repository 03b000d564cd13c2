"""Accounts: admin CRUD and self-service profile."""
