"""`ddbbridge bench`: our pipeline against the naive per-item design, over a simulated WAN.

Dev tooling only (product code never imports it). `run.run_bench` drives one run; `report` renders
the JSON into the markdown table the README shows; `chart` draws the figure.
"""
