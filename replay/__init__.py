"""ATOM."""
