"""Capandex: the shared layer every function imports."""
