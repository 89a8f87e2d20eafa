"""Side-by-side benchmarks of kernelyard against the reference implementations."""
