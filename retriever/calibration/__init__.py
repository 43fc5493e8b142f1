"""Choosing defaults by measuring them: plans, adaptive rules, fusion, layouts, encoders; the record they keep."""
