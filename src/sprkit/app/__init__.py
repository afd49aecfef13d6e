"""The application layer above the library: the command line, configuration, the prune
pipeline, reports and plots, the demo. The library (formula, instances, optim, networks) never
imports from here."""
