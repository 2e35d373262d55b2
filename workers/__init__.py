"""galileo workers: one uvloop process per local IP, sending from that address."""
