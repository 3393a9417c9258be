"""
Core: late-interaction numerics and storage (encoder, fixed dimensional encodings, MaxSim, token store, index files).

Nothing in this subpackage imports txtai: the txtai adapters in the parent package are thin layers over it.
"""
