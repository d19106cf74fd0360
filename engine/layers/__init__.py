"""Forward/backward function pairs, one module per family, in the style of cs231n's ``layers.py``.

Every ``*_forward`` returns ``(out, cache)``; every ``*_backward`` takes ``(dout, cache)`` and returns
the gradient of every input. They work in the dtype they are given (float32 in the app, float64 in
gradient checks). Layouts are PyTorch's: ``(N, C, *spatial)``; convolution is cross-correlation.
"""
