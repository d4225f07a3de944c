"""The engine behind PennyLane's device API: `qtransfer.qubit` (statevector) and `qtransfer.mixed` (noise)."""
