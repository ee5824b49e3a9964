"""One module per processing step; ``streams.app.load_agents`` imports every one."""
