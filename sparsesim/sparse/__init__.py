"""Pure sparse logic (no simpy, no timing): what work zeros save, as numpy functions that return counts."""
