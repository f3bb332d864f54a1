"""Tests of hyperet.data (numpy only)."""
