"""Queries and writes on the metadata database, grouped by what they are about.

Functions take an open ``AsyncSession`` and never commit: the caller owns the transaction
(see :mod:`storage.transaction`), so several repository calls compose into one atomic change.
"""
