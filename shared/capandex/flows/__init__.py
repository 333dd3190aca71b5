"""Flows as stored documents: create, read, update, delete, and their version history."""
