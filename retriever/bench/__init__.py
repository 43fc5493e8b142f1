"""``funnel bench``: quality, latency and storage per dim, per funnel plan and per quantization."""
