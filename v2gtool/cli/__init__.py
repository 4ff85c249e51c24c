"""The click command-line interface: thin commands that parse options, call the core and render."""
