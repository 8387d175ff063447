"""The clinical policy as the service shows it: the sources behind every decision."""
