"""Code that changes results and is shared by several stages; imports no stage."""
