"""What runs leave for people: figures (matplotlib loaded only to draw), tables, the reproduction report."""
