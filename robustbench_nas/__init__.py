"""robustbench-nas: robustness datasets for NAS search spaces, and the measures that predict robustness."""

__version__ = "0.1.0"
