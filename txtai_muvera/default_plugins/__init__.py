"""
Default plugins: what this package registers, through the same hooks a third-party plugin uses.
"""
