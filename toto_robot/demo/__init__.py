"""The main job on the embedded default data: pixels -> tokens -> Toto -> probes -> policies -> report."""
