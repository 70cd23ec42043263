"""The studies behind the README's tables, run as modules of this folder against the installed cldet:

    python -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml   # learning protocols
    python -m benchmarks.ablation --protocol benchmarks/protocols/chess13-2step.yaml       # ablation of the method
    python -m benchmarks.kd_overhead --run RUN                                             # teacher cost
    python -m benchmarks.export_bench --run RUN --data DATA.yaml                           # INT8 export
    python -m benchmarks.update_readme                                                     # tables -> README

Run them from the repository root (`make bench-cl`, `make bench-export`). Results land in benchmarks/results/.
"""
