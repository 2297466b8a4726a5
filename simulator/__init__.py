"""A virtual grid and the devices on it, for running light nodes without hardware."""
