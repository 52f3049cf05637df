"""Plugins for the whole suite: tests/_leaks.py fails a test that leaks
threads, file descriptors or child processes."""

pytest_plugins = ["_leaks"]
