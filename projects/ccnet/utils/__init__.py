"""Small helpers tied to no concept of the paper (files on disk)."""
