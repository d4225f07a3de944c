"""Datasets: image folders and their splits, verified downloads, the transform factory, spirals and CIFAR-10."""
