"""What the tests share: float64 NumPy references, autodiff helpers, the spec grid, fake plugin
distributions, planted-defect components, and comparisons with per-dtype tolerances."""
