"""The face detectors behind engine.detect's Detector protocol, one module each (see engine.detect.DETECTORS)."""
