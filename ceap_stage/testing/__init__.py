"""Tools for testing stages without AWS: fake Lambda context, event builder, stage runner."""
