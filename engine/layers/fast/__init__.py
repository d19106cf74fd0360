"""The fast implementations behind ``engine.layers.conv``, as cs231n's ``fast_layers`` beside ``layers``.

``engine.layers.conv`` says what a convolution computes and ``engine.layers.naive`` computes it by loops;
the modules here compute the same numbers faster, one speed trick per module, each with the measurement
that justified it in its docstring:

* ``dispatch``: which implementation a convolution of given shapes takes (``conv_path``), the only place
  that decides, and the padding and bias around it;
* ``im2col``: patch matrices built one kernel offset at a time, and the general path, one matrix product
  per group (pooling uses the same offsets);
* ``pointwise``: 1x1 kernels at stride 1, where the input is its own patch matrix;
* ``wide``: stride 1 with few output channels, every kernel offset one contiguous run of the input;
* ``depthwise`` and ``depthwise_copies``: one input channel per group, products over shifted row copies;
* ``strided_copy``: step-2 columns copied in pairs (stride-2 patches and depthwise copies);
* ``recurrent``: the LSTM's and GRU's forward loops, one ``tanh`` for all gates, written in place
  (``engine.layers.recurrent`` holds the loop forms and every backward pass);
* ``threads``: the opt-in thread pool the depthwise blocks can be spread over (``CNN_VIS_THREADS``).

``tests/engine/test_conv_fast_paths.py`` compares every path with the loops, forward and backward.
"""
