"""What a search is: plans, the dim ladder, filters, fusion, the adaptive rule, specs and results. Imports nothing above it."""
