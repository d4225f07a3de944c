"""Simulators and back ends: circuits as data, statevector and density-matrix engines, shots, Fock states, the
PennyLane bridge, memory estimates. Knows nothing of networks, images or files."""
