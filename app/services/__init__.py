"""What the routes call: model store, run cache, input parsing, feature-map tiling. No HTTP in here except ApiError."""
