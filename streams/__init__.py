"""The app's wiring: settings, the Faust app, topics, tables, runner, web, serving, embedded services."""
