"""Allocation policy: which IP serves which job, and what every outcome teaches.

Pure code with the clock passed in: no sockets, no sleeps, tested with a fake clock.
"""
