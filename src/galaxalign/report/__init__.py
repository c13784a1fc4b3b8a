"""The demo job and its self-contained HTML report."""
