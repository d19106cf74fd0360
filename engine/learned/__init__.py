"""What a network learned: what each channel detects (top examples, feature visualisation), how the representation
changes from the pixels to the last layer (projections, linear probes, nearest neighbours), backpropagation's
gradients and one SGD step, and adversarial examples that fool the network. NumPy and the standard library only.

See docs/learned.md for the methods, their references and the numbers they were checked against.
"""
