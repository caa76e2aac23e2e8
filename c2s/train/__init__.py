"""The training job: Ray Data teacher pool -> Ray Train student workers (thin over c2s.method/student)."""
