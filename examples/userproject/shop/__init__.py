"""A sample user project: a shop's background jobs, tested with aioqueue.testing only."""
