"""Many heads on the same features: comparisons, sweeps, cross-validation, noise scans, statistics, and the
paper's experiments (reproduce/)."""
