"""Drivers on top of the library: analyze, compare, reproduce, demo, explain."""
