"""Data: MATLAB-compatible resizing, degradations and datasets."""
