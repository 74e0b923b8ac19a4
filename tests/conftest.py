"""Shared pytest fixtures: database URLs for SQLite and the local PostgreSQL server."""
