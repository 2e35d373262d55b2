"""The wire between the coordinator and its workers. Imports nothing else of galileo."""
