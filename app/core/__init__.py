"""Configuration shared by the whole app."""
