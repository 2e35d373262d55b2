"""The farm: coordinator, supervisor, fork server, control socket."""
