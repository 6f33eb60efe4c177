"""What shardguard matches against: hash types, list parsing, list artifacts and concept indexes.

Nothing in this package knows about pipelines; pipelines only read the artifacts built here.
"""
