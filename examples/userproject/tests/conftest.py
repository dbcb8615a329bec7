"""Nothing to set up: the aioqueue pytest plugin provides the fixtures."""
