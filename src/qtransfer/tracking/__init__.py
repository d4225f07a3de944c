"""Experiment tracking with the tools users already run: TensorBoard event files and MLflow runs."""
